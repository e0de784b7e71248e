import socket



def test_daemon_starts_on_port_zero_and_answers(netapps_daemon):
    d = netapps_daemon(["uppercase"], listen={"uppercase": ["tcp:0:interface=127.0.0.1", "udp:0:interface=127.0.0.1"]})
    with socket.create_connection(d.address("uppercase"), timeout=5) as s:
        s.sendall(b"hello\n")
        assert s.makefile("rb").readline() == b"HELLO\n"
