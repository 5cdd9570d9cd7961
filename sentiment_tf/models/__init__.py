"""Model families. Each module owns its Keras flavour: `lstm` uses Keras 3, `bert` uses tf-keras."""
