// node-ipc's README "UDP Server 2 - Hello", as published, with the changes
// marked "interop:" (the package alias, the ports from the environment, no
// `colors` string extensions, and an exit after the first answer).
import ipc from 'node-ipc-14'; // interop: the pinned node-ipc 14 alias

ipc.config.id = 'hello';
ipc.config.retry= 1500;
ipc.config.networkPort = Number(process.env.IPC_NETWORK_PORT); // interop: world's port

ipc.serveNet(
    Number(process.env.IPC_HELLO_PORT), // interop: the README's 8001
    'udp4',
    function(){
        ipc.server.on(
            'message',
            function(data){
                ipc.log('got Data');
                ipc.log('got a message from ', data.from ,' : ', data.message); // interop: no .debug/.variable
                process.exit(0); // interop: stop after the first answer
            }
        );
        ipc.server.emit(
            {
                address : '127.0.0.1', //any hostname will work
                port    : ipc.config.networkPort
            },
            'message',
            {
                from    : ipc.config.id,
                message : 'Hello'
            }
        );
    }
);

ipc.server.start();
