"""sentiment_tf: train, evaluate, adapt and serve Chinese sentiment classifiers with TensorFlow."""

__version__ = "0.1.0"
