// node-ipc's README "Server with the cluster Module", as published, with the
// changes marked "interop:" (the package alias and the socket path from the
// environment).
import fs from 'fs';
import ipc from 'node-ipc-14'; // interop: the pinned node-ipc 14 alias
import {cpus} from 'os';
import cluster from 'cluster';

const cpuCount=cpus().length;
const socketPath=process.env.IPC_SOCKET_PATH; // interop: the README's '/tmp/ipc.sock'

ipc.config.unlink = false;

if (cluster.isMaster) {
    if (fs.existsSync(socketPath)) {
        fs.unlinkSync(socketPath);
    }

    for (let i = 0; i < cpuCount; i++) {
        cluster.fork();
    }
}else{
    ipc.serve(
        socketPath,
        function() {
            ipc.server.on(
                'currentDate',
                function(data,socket) {
                    console.log(`pid ${process.pid} got: `, data);
                }
            );
        }
    );

    ipc.server.start();
    console.log(`pid ${process.pid} listening on ${socketPath}`);
}
