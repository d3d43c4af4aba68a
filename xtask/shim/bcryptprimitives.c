/*
 * A stand-in for Windows' bcryptprimitives.dll, for Wine only.
 *
 * Rust's standard library (1.78 and later) draws its random bytes from
 * ProcessPrng in bcryptprimitives.dll. Wine 8.0 has no such export, so
 * every Rust program stops at load time there. `cargo xtask windows` builds
 * this file with mingw into a throwaway Wine prefix; it is never shipped and
 * never used on real Windows.
 *
 * ProcessPrng fills the buffer from RtlGenRandom (advapi32's
 * SystemFunction036), which Wine provides.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reason;
    (void)reserved;
    return TRUE;
}
