// node-ipc's README "Server for Unix Sockets, Windows Sockets & TCP Sockets",
// as published, with three changes marked "interop:" (the package alias, the
// socket root from the environment, and no `colors` string extensions).
import ipc from 'node-ipc-14'; // interop: the pinned node-ipc 14 alias

ipc.config.id = 'world';
ipc.config.retry= 1500;
ipc.config.socketRoot = process.env.IPC_SOCKET_ROOT; // interop

ipc.serve(
    function(){
        ipc.server.on(
            'message',
            function(data,socket){
                ipc.log('got a message : ', data); // interop: no .debug
                ipc.server.emit(
                    socket,
                    'message', //this can be anything you want so long as
                    //your client knows.
                    data+' world!'
                );
            }
        );
        ipc.server.on(
            'socket.disconnected',
            function(socket, destroyedSocketID) {
                ipc.log('client ' + destroyedSocketID + ' has disconnected!');
            }
        );
    }
);

ipc.server.start();
