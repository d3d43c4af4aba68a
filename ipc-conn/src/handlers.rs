//! A node-ipc style handler registry: `on`, `once`, `off` and the `'*'`
//! wildcard (`docs/protocol.md` §3.2).
//!
//! Dispatch order follows node-ipc 12/14: wildcard handlers run first (they
//! receive the event name), then the handlers registered for that name, each
//! in registration order. A handler that panics does not take the endpoint
//! down: the panic is caught and reported back to the caller of
//! [`Handlers::dispatch`], which turns it into an `error` event.
//!
//! The registry is the same on both sides; it is generic over the event
//! type each of them dispatches.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Identifies one registered handler, for [`Handlers::off`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandlerId(u64);

/// The wildcard event name.
pub const WILDCARD: &str = "*";

type Typed<A> = Arc<dyn Fn(&A) + Send + Sync>;
type Wild<A> = Arc<dyn Fn(&str, &A) + Send + Sync>;

struct Entry<F> {
    id: HandlerId,
    once: bool,
    f: F,
}

impl<F: Clone> Clone for Entry<F> {
    fn clone(&self) -> Self {
        Entry {
            id: self.id,
            once: self.once,
            f: self.f.clone(),
        }
    }
}

/// FNV-1a: event names are short, and this lookup runs once per message.
/// (Only handler names chosen by the program are stored, so a peer cannot
/// fill the map with colliding keys.)
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

struct Inner<A> {
    next: u64,
    // Copy-on-write lists: dispatch clones the `Arc` under the lock and calls
    // the handlers after releasing it, so handlers may register or remove
    // handlers themselves.
    typed: FnvMap<String, Arc<Vec<Entry<Typed<A>>>>>,
    wild: Arc<Vec<Entry<Wild<A>>>>,
}

/// A registry of event handlers taking `&A`.
pub struct Handlers<A> {
    inner: Mutex<Inner<A>>,
    /// Bumped by every change, so a [`DispatchCache`] knows when it is stale.
    generation: AtomicU64,
}

type WildList<A> = Arc<Vec<Entry<Wild<A>>>>;
type TypedList<A> = Arc<Vec<Entry<Typed<A>>>>;
/// The wildcard and typed lists used for one event name.
type Lists<A> = (Option<WildList<A>>, Option<TypedList<A>>);

/// The handler lists last used for one event name, kept by one dispatching
/// task (a connection's reader) so that a stream of messages with the same
/// name is dispatched without taking the registry's lock. Lists holding a
/// `once` handler are never cached.
pub struct DispatchCache<A> {
    generation: u64,
    event: String,
    lists: Option<Lists<A>>,
}

impl<A> Default for DispatchCache<A> {
    fn default() -> Self {
        DispatchCache {
            generation: 0,
            event: String::new(),
            lists: None,
        }
    }
}

impl<A> std::fmt::Debug for DispatchCache<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatchCache")
            .field("generation", &self.generation)
            .field("event", &self.event)
            .field("filled", &self.lists.is_some())
            .finish()
    }
}

/// A handler panicked while an event was dispatched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerPanic {
    /// The event being dispatched.
    pub event: String,
    /// The panic message, when it was a string.
    pub message: String,
}

impl<A> Default for Handlers<A> {
    fn default() -> Self {
        Handlers {
            inner: Mutex::new(Inner {
                next: 1,
                typed: FnvMap::default(),
                wild: Arc::new(Vec::new()),
            }),
            generation: AtomicU64::new(1),
        }
    }
}

impl<A> std::fmt::Debug for Handlers<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Handlers")
            .field("events", &inner.typed.keys().collect::<Vec<_>>())
            .field("wildcard", &inner.wild.len())
            .finish()
    }
}

impl<A> Handlers<A> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner<A>> {
        // A panic while the lock is held cannot leave the maps inconsistent
        // (every mutation is a single insert/retain), so a poisoned lock is
        // still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lock, for a change: cached dispatch lists become stale.
    fn lock_mut(&self) -> MutexGuard<'_, Inner<A>> {
        let guard = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        guard
    }

    fn add_typed(&self, event: &str, once: bool, f: Typed<A>) -> HandlerId {
        let mut inner = self.lock_mut();
        let id = HandlerId(inner.next);
        inner.next += 1;
        let list = inner.typed.entry(event.to_owned()).or_default();
        Arc::make_mut(list).push(Entry { id, once, f });
        id
    }

    fn add_wild(&self, once: bool, f: Wild<A>) -> HandlerId {
        let mut inner = self.lock_mut();
        let id = HandlerId(inner.next);
        inner.next += 1;
        Arc::make_mut(&mut inner.wild).push(Entry { id, once, f });
        id
    }

    /// Registers `f` for `event`. The name `"*"` is an ordinary name here;
    /// use [`Handlers::on_any`] for the wildcard.
    pub fn on(&self, event: &str, f: impl Fn(&A) + Send + Sync + 'static) -> HandlerId {
        self.add_typed(event, false, Arc::new(f))
    }

    /// Registers `f` for the next `event` only.
    pub fn once(&self, event: &str, f: impl Fn(&A) + Send + Sync + 'static) -> HandlerId {
        self.add_typed(event, true, Arc::new(f))
    }

    /// Registers a wildcard handler: it sees every event, before the typed
    /// handlers, with the event name.
    pub fn on_any(&self, f: impl Fn(&str, &A) + Send + Sync + 'static) -> HandlerId {
        self.add_wild(false, Arc::new(f))
    }

    /// A wildcard handler that runs once.
    pub fn once_any(&self, f: impl Fn(&str, &A) + Send + Sync + 'static) -> HandlerId {
        self.add_wild(true, Arc::new(f))
    }

    /// Removes one handler. Returns whether it was registered.
    pub fn off(&self, id: HandlerId) -> bool {
        let mut inner = self.lock_mut();
        if inner.wild.iter().any(|e| e.id == id) {
            Arc::make_mut(&mut inner.wild).retain(|e| e.id != id);
            return true;
        }
        let mut found = None;
        for (name, list) in inner.typed.iter() {
            if list.iter().any(|e| e.id == id) {
                found = Some(name.clone());
                break;
            }
        }
        match found {
            Some(name) => {
                if let Some(list) = inner.typed.get_mut(&name) {
                    Arc::make_mut(list).retain(|e| e.id != id);
                    if list.is_empty() {
                        inner.typed.remove(&name);
                    }
                }
                true
            }
            None => false,
        }
    }

    /// Removes every handler of `event` (`"*"` removes the wildcard
    /// handlers). Returns how many were removed.
    pub fn off_event(&self, event: &str) -> usize {
        let mut inner = self.lock_mut();
        if event == WILDCARD {
            let n = inner.wild.len();
            inner.wild = Arc::new(Vec::new());
            return n;
        }
        inner.typed.remove(event).map(|l| l.len()).unwrap_or(0)
    }

    /// Removes every handler.
    pub fn clear(&self) {
        let mut inner = self.lock_mut();
        inner.typed.clear();
        inner.wild = Arc::new(Vec::new());
    }

    /// Whether anything (a typed or a wildcard handler) would see `event`.
    pub fn is_listened(&self, event: &str) -> bool {
        let inner = self.lock();
        !inner.wild.is_empty() || inner.typed.contains_key(event)
    }

    /// Whether a typed handler is registered for `event` (wildcards ignored).
    pub fn has_typed(&self, event: &str) -> bool {
        self.lock().typed.contains_key(event)
    }

    /// Calls the wildcard handlers, then the handlers of `event`, with `arg`.
    /// Returns how many handlers ran and the panics caught.
    pub fn dispatch(&self, event: &str, arg: &A) -> Dispatched {
        let (wild, typed, _) = self.take_lists(event);
        Self::run(event, arg, wild.as_deref(), typed.as_deref())
    }

    /// [`Handlers::dispatch`] through `cache`: while nothing was registered
    /// or removed since the cache was filled for `event`, no lock is taken.
    /// Same order, same semantics.
    pub fn dispatch_cached(
        &self,
        cache: &mut DispatchCache<A>,
        event: &str,
        arg: &A,
    ) -> Dispatched {
        let generation = self.generation.load(Ordering::Acquire);
        if let Some((wild, typed)) = &cache.lists {
            if cache.generation == generation && cache.event == event {
                return Self::run(event, arg, wild.as_deref(), typed.as_deref());
            }
        }
        let (wild, typed, generation) = self.take_lists(event);
        let out = Self::run(event, arg, wild.as_deref(), typed.as_deref());
        let has_once = wild.iter().flat_map(|w| w.iter()).any(|e| e.once)
            || typed.iter().flat_map(|t| t.iter()).any(|e| e.once);
        if has_once {
            cache.lists = None;
        } else {
            cache.generation = generation;
            cache.event.clear();
            cache.event.push_str(event);
            cache.lists = Some((wild, typed));
        }
        out
    }

    /// The lists for `event` (once-handlers removed from the registry before
    /// they run, so a handler that emits the same event again does not see
    /// itself), and the generation they belong to.
    #[allow(clippy::type_complexity)]
    fn take_lists(&self, event: &str) -> (Option<WildList<A>>, Option<TypedList<A>>, u64) {
        let mut inner = self.lock();
        let wild = (!inner.wild.is_empty()).then(|| inner.wild.clone());
        let typed = inner.typed.get(event).cloned();
        let mut changed = false;
        if wild.as_ref().is_some_and(|w| w.iter().any(|e| e.once)) {
            Arc::make_mut(&mut inner.wild).retain(|e| !e.once);
            changed = true;
        }
        if let Some(t) = &typed {
            if t.iter().any(|e| e.once) {
                if let Some(list) = inner.typed.get_mut(event) {
                    Arc::make_mut(list).retain(|e| !e.once);
                    if list.is_empty() {
                        inner.typed.remove(event);
                    }
                }
                changed = true;
            }
        }
        let generation = if changed {
            self.generation.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            self.generation.load(Ordering::Acquire)
        };
        (wild, typed, generation)
    }

    fn run(
        event: &str,
        arg: &A,
        wild: Option<&Vec<Entry<Wild<A>>>>,
        typed: Option<&Vec<Entry<Typed<A>>>>,
    ) -> Dispatched {
        let mut out = Dispatched::default();
        for e in wild.into_iter().flatten() {
            out.ran += 1;
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| (e.f)(event, arg))) {
                out.panics.push(panic_of(event, p));
            }
        }
        if let Some(typed) = typed {
            for e in typed {
                out.ran += 1;
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| (e.f)(arg))) {
                    out.panics.push(panic_of(event, p));
                }
            }
        }
        out
    }
}

/// What [`Handlers::dispatch`] did.
#[derive(Debug, Default)]
pub struct Dispatched {
    /// How many handlers ran (wildcard ones included).
    pub ran: usize,
    /// The panics caught, in the order they happened.
    pub panics: Vec<HandlerPanic>,
}

fn panic_of(event: &str, p: Box<dyn std::any::Any + Send>) -> HandlerPanic {
    let message = if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "handler panicked".to_owned()
    };
    HandlerPanic {
        event: event.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    fn log() -> Arc<StdMutex<Vec<String>>> {
        Arc::new(StdMutex::new(Vec::new()))
    }

    #[test]
    fn wildcard_runs_first_then_typed_in_order() {
        let h: Handlers<i32> = Handlers::new();
        let l = log();
        let (a, b, c) = (l.clone(), l.clone(), l.clone());
        h.on("x", move |v| a.lock().unwrap().push(format!("x1:{v}")));
        h.on("x", move |v| b.lock().unwrap().push(format!("x2:{v}")));
        h.on_any(move |name, v| c.lock().unwrap().push(format!("*:{name}:{v}")));
        let d = h.dispatch("x", &7);
        assert_eq!(d.ran, 3);
        assert!(d.panics.is_empty());
        assert_eq!(*l.lock().unwrap(), vec!["*:x:7", "x1:7", "x2:7"]);
        let d = h.dispatch("y", &1);
        assert_eq!(d.ran, 1);
    }

    #[test]
    fn once_and_off() {
        let h: Handlers<()> = Handlers::new();
        let l = log();
        let (a, b) = (l.clone(), l.clone());
        h.once("e", move |_| a.lock().unwrap().push("once".into()));
        let id = h.on("e", move |_| b.lock().unwrap().push("on".into()));
        h.dispatch("e", &());
        h.dispatch("e", &());
        assert!(h.off(id));
        assert!(!h.off(id));
        assert_eq!(h.dispatch("e", &()).ran, 0);
        assert_eq!(*l.lock().unwrap(), vec!["once", "on", "on"]);
        assert!(!h.is_listened("e"));
    }

    #[test]
    fn panics_are_caught_and_later_handlers_still_run() {
        let h: Handlers<()> = Handlers::new();
        let l = log();
        let a = l.clone();
        h.on("e", |_| panic!("boom"));
        h.on("e", move |_| a.lock().unwrap().push("after".into()));
        let d = h.dispatch("e", &());
        assert_eq!(d.ran, 2);
        assert_eq!(d.panics.len(), 1);
        assert_eq!(d.panics[0].message, "boom");
        assert_eq!(d.panics[0].event, "e");
        assert_eq!(*l.lock().unwrap(), vec!["after"]);
    }

    #[test]
    fn handlers_may_modify_the_registry_while_dispatching() {
        let h: Arc<Handlers<()>> = Arc::new(Handlers::new());
        let h2 = h.clone();
        h.on("e", move |_| {
            h2.on("e", |_| {});
        });
        assert_eq!(h.dispatch("e", &()).ran, 1);
        assert_eq!(h.dispatch("e", &()).ran, 2);
        assert_eq!(h.off_event("e"), 3);
        assert_eq!(h.off_event("*"), 0);
    }

    #[test]
    fn cached_dispatch_follows_every_change_of_the_registry() {
        let h: Arc<Handlers<u32>> = Arc::new(Handlers::new());
        let mut cache = DispatchCache::default();
        let l = log();
        let a = l.clone();
        let first = h.on("e", move |v| a.lock().unwrap().push(format!("a{v}")));
        assert_eq!(h.dispatch_cached(&mut cache, "e", &1).ran, 1);
        assert_eq!(h.dispatch_cached(&mut cache, "e", &2).ran, 1);
        // Another name through the same cache.
        assert_eq!(h.dispatch_cached(&mut cache, "f", &3).ran, 0);
        // A new handler, a wildcard, a once-handler: all seen at once.
        let b = l.clone();
        h.on("e", move |v| b.lock().unwrap().push(format!("b{v}")));
        let c = l.clone();
        h.on_any(move |name, v| c.lock().unwrap().push(format!("*{name}{v}")));
        let d = l.clone();
        h.once("e", move |v| d.lock().unwrap().push(format!("once{v}")));
        assert_eq!(h.dispatch_cached(&mut cache, "e", &4).ran, 4);
        assert_eq!(h.dispatch_cached(&mut cache, "e", &5).ran, 3);
        // Removal.
        assert!(h.off(first));
        assert_eq!(h.dispatch_cached(&mut cache, "e", &6).ran, 2);
        h.clear();
        assert_eq!(h.dispatch_cached(&mut cache, "e", &7).ran, 0);
        assert_eq!(
            *l.lock().unwrap(),
            vec!["a1", "a2", "*e4", "a4", "b4", "once4", "*e5", "a5", "b5", "*e6", "b6"]
        );
    }

    #[test]
    fn a_once_handler_added_from_a_cached_dispatch_runs_once() {
        let h: Arc<Handlers<()>> = Arc::new(Handlers::new());
        let mut cache = DispatchCache::default();
        let h2 = h.clone();
        let ran = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let r = ran.clone();
        h.on("e", move |_| {
            let r = r.clone();
            h2.once("e", move |_| {
                r.fetch_add(1, Ordering::SeqCst);
            });
        });
        for _ in 0..3 {
            h.dispatch_cached(&mut cache, "e", &());
        }
        // Each dispatch after the first ran the once-handler added by the one
        // before it, exactly once.
        assert_eq!(ran.load(Ordering::SeqCst), 2);
    }
}
