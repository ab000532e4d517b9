"""keras_mtmm: multi-task, multi-modal deep learning on Keras 3 / TensorFlow, served by TF Serving."""

__version__ = "0.1.0"
