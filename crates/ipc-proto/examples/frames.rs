//! Prints every `ERR_IPC_*` code this project reports (placeholder main job
//! until the codec lands).
fn main() {
    for code in ipc_proto::ErrorCode::ALL {
        println!("{code}");
    }
}
