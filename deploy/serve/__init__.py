"""Serving: Triton Inference Server model repositories, a local Triton server, and its client.

- ``repository``    ``package_triton(artifact, repo)``: configs built as Triton's protobuf, checked, written
                    atomically; the video-bytes ensemble with ``preprocess``.
- ``triton_models`` the Python-backend ``model.py`` files the repository carries.
- ``server``        the ``tritonserver`` binary of the nvidia-pytriton wheel, in its own environment, started
                    on 127.0.0.1 and stopped by its PID.
- ``client``        KServe v2 requests over http or grpc (``tritonclient``): clips or video bytes.

Nothing here imports torch.
"""
