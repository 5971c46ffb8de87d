"""The serving pieces that need no server: ports, addresses, concurrency levels and reading the server's log."""

from __future__ import annotations

import socket

import pytest

from tamdeploy.errors import TamdeployError


def test_a_port_is_free_again_while_a_stopped_server_s_connections_wait_out_time_wait():
    from tamdeploy.deploy.serve.server import check_port_free

    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers (tritonserver) bind
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = listener.accept()
            accepted.close()  # the server side closes first: its end of the connection waits in TIME-WAIT
    check_port_free(port)
    with pytest.raises(TamdeployError, match="port 70000 is not a port: use 1-65535"):
        check_port_free(70000)


@pytest.mark.parametrize("url", ["http://127.0.0.1:70000", "grpc://127.0.0.1:", "127.0.0.1", "grpc://:8001"])
def test_server_addresses_need_a_host_and_a_port_in_range(url):
    from tamdeploy.deploy.serve.client import ServerAddress

    with pytest.raises(TamdeployError, match="give http://HOST:PORT or grpc://HOST:PORT, PORT 1-65535"):
        ServerAddress.parse(url)
    assert ServerAddress.parse("grpc://127.0.0.1:8001/") == ServerAddress("grpc", "127.0.0.1:8001")


def test_concurrency_levels_are_positive_integers_without_gaps():
    from tamdeploy.deploy.serve.load import parse_concurrency

    assert parse_concurrency("1,4") == [1, 4]
    for text in ("1,,2", "0", "", "a"):
        with pytest.raises(TamdeployError, match="comma-separated positive integers"):
            parse_concurrency(text)


def test_the_failure_line_is_triton_s_error_not_its_usage_text_or_cuda_notices(tmp_path):
    from tamdeploy.deploy.serve.server import ServerEnvironment, TritonServer

    server = TritonServer(tmp_path, ServerEnvironment(tmp_path), tmp_path)
    server.log_path.write_text("Usage: tritonserver [options]\n  --log-error <boolean>\n"
                               "cannot listen to HTTP requests and GRPC requests at the same address and port\n")
    assert server.failure_line().startswith("cannot listen to HTTP requests")
    server.log_path.write_text('E1130 10:00:00.1 1 x.cc:1] "CudaDriverHelper has not been initialized."\n'
                               "E1130 10:00:00.2 1 y.cc:2] failed to load model 'tiny'\nI1130 done\n")
    assert server.failure_line().endswith("failed to load model 'tiny'")
