"""Labels for videos and accuracy on a labelled set: ``tamdeploy predict`` and ``tamdeploy eval``.

- ``predictor``   ``Predictor(artifact).predict(path)``, and the batched stream predict and eval share:
                  the views of a video through the batch axis, logits averaged over them.
- ``decoding``    decode worker processes ahead of the model, with a bounded queue, results in order.
- ``sources``     what ``predict VIDEOS...`` means: files, frame folders, folders, list files.
- ``annotations`` the labelled set: mmaction2 video / rawframes lists, CSV (path,label or Kinetics').
- ``labels``      class names: one per line, id,name CSV, or JSON.
- ``metrics``     top-k, confusion matrix, mean class accuracy, agreement.
- ``evaluate``    ``evaluate(artifacts, ann)``: one decoding pass for every model, the report and its files.
- ``ray_pipeline`` the same evaluation as a Ray Data pipeline (``--ray``).
- ``plots``       the confusion matrix as a PNG.
"""

from tamdeploy.lazy import lazy_attributes

_PUBLIC = {
    "Predictor": "predictor", "Prediction": "predictor", "evaluate": "evaluate", "EvalReport": "evaluate",
    "read_annotations": "annotations", "read_labels": "labels",
}
__all__ = sorted(_PUBLIC)

__getattr__ = lazy_attributes(__name__, _PUBLIC)
