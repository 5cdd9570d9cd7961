"""Adam for the Keras 3 LSTM, with each variable's update done by TensorFlow's fused ``ApplyAdam`` kernel.

Keras 3's ``Adam.update_step`` is eight element-wise ops per variable, each writing a temporary
the size of the variable. For the 18k × 128 embedding table that is most of a training step's
fixed cost on CPU. ``ResourceApplyAdam`` does the same update in one pass (faster per step:
bench/README.md, "Design measurements").

The arithmetic is Keras' own, so each step makes the same update as ``keras.optimizers.Adam``
within float rounding (tested, repeated tokens included):

    alpha = lr · sqrt(1 − β2^t) / (1 − β1^t)
    m += (g − m) · (1 − β1);   v += (s − v) · (1 − β2);   var −= alpha · m / (sqrt(v) + ε)

where g is the gradient and s its square, except for the embedding table's sparse gradient: for a
token that occurs k times in a batch, g is the sum of the k occurrences' gradients but Keras 3 takes
s as the sum of their squares, not the square of the sum. The fused kernel squares g, so before it
runs, ``v`` of the batch's tokens gets the difference, scaled so the kernel's update lands on Keras'
value. That correction touches only the batch's rows. (The Adam paper and PyTorch square the sum;
doing that here would be faster but would no longer be Keras' Adam.)
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="sentiment_tf")
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` whose per-variable update is one fused TensorFlow kernel.

    Same constructor and config as ``keras.optimizers.Adam``. ``amsgrad=True`` falls back to
    Keras' own update, as there is no fused AMSGrad kernel.

    Example:
        model.compile(optimizer=FusedAdam(2e-3), loss="sparse_categorical_crossentropy")
    """

    def scale_learning_rate(self, variables: list, scale: tf.Variable) -> None:
        """Multiplies the learning rate of ``variables`` by ``scale``, read at every step (a callback may
        change it). At 0 their update is skipped, Adam's moments included, as for a frozen layer."""
        if not hasattr(self, "_scales"):
            self._scales = {}
        for variable in variables:
            self._scales[self._var_key(variable)] = scale

    def update_step(self, gradient, variable, learning_rate):
        scale = getattr(self, "_scales", {}).get(self._var_key(variable))
        if scale is None:
            return self._update(gradient, variable, learning_rate)
        def apply():
            self._update(gradient, variable, learning_rate * tf.cast(scale, variable.dtype))

        tf.cond(scale > 0, apply, lambda: None)

    def _update(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        m, v = self._momentums[index].value, self._velocities[index].value
        # The kernel takes a dense gradient; Keras' own update densifies it too, in its first subtraction.
        dense = tf.convert_to_tensor(tf.cast(gradient, dtype))
        if isinstance(gradient, tf.IndexedSlices):
            self._correct_velocity(gradient, dense, v, beta_2)
        # Under tf.distribute, ``variable`` is already this device's copy, and ``.handle`` of a
        # mirrored slot variable inside ``strategy.extended.update`` is the copy on the same device.
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=m.handle, v=v.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype),
            beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype), grad=dense)

    @staticmethod
    def _correct_velocity(gradient: tf.IndexedSlices, dense: tf.Tensor, v: tf.Variable, beta_2: tf.Tensor) -> None:
        """Pre-corrects ``v`` on the gradient's rows so the fused kernel yields Keras' velocity.

        Keras: v' = β2·v + (1 − β2)·S, with S = Σ gᵢ² over a row's occurrences gᵢ.
        Kernel: v' = β2·v + (1 − β2)·G², with G = Σ gᵢ (``dense``'s row).
        Adding (S − G²)·(1 − β2)/β2 to v first makes the kernel's result Keras'. Since
        Σ gᵢ·(gᵢ − G) = S − G², one scatter-add of the occurrences does it, with no unique().
        """
        values = tf.cast(gradient.values, v.dtype)
        row_sums = tf.gather(dense, gradient.indices)
        v.scatter_add(tf.IndexedSlices(values * (values - row_sums) * ((1 - beta_2) / beta_2), gradient.indices))
