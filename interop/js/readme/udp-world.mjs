// node-ipc's README "UDP Server 1 - World", as published, with the changes
// marked "interop:" (the package alias, networkPort from the environment, no
// `colors` string extensions).
import ipc from 'node-ipc-14'; // interop: the pinned node-ipc 14 alias

ipc.config.id = 'world';
ipc.config.retry= 1500;
ipc.config.networkPort = Number(process.env.IPC_NETWORK_PORT); // interop

ipc.serveNet(
    'udp4',
    function(){
        console.log(123);
        ipc.server.on(
            'message',
            function(data,socket){
                ipc.log('got a message from ', data.from ,' : ', data.message); // interop: no .debug/.variable
                ipc.server.emit(
                    socket,
                    'message',
                    {
                        from : ipc.config.id,
                        message : data.message+' world!'
                    }
                );
            }
        );

        console.log(ipc.server);
    }
);

ipc.server.start();
