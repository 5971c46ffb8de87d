"""Python-backend models that ``tamdeploy package`` copies into a Triton repository as ``model.py``.

They run inside Triton's Python stub (``triton_python_backend_utils`` is the stub's module), never inside
tamdeploy: nothing in tamdeploy imports them. They import no torch.
"""
