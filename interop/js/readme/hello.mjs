// node-ipc's README "Client for Unix Sockets & TCP Sockets", as published,
// with the changes marked "interop:" (the package alias, the socket root from
// the environment, no `colors` string extensions, and an exit after the
// first answer instead of running forever).
import ipc from 'node-ipc-14'; // interop: the pinned node-ipc 14 alias

ipc.config.id = 'hello';
ipc.config.retry= 1500;
ipc.config.socketRoot = process.env.IPC_SOCKET_ROOT; // interop

ipc.connectTo(
    'world',
    function(){
        ipc.of.world.on(
            'connect',
            function(){
                ipc.log('## connected to world ##', ipc.config.delay); // interop: no .rainbow
                ipc.of.world.emit(
                    'message', //any event or message type your server listens for
                    'hello'
                )
            }
        );
        ipc.of.world.on(
            'disconnect',
            function(){
                ipc.log('disconnected from world'); // interop: no .notice
            }
        );
        ipc.of.world.on(
            'message', //any event or message type your server listens for
            function(data){
                ipc.log('got a message from world : ', data); // interop: no .debug
                ipc.disconnect('world'); // interop: stop after the first answer
            }
        );
    }
);
