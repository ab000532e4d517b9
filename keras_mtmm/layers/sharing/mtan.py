"""MTAN: a shared convolutional base with a soft attention module per task at every block.

Liu, Johns, Davison, "End-to-End Multi-Task Learning with Attention", CVPR
2019 (the authors' code: lorenmt/mtan).

`sharing.type: mtan` turns every cnn image encoder into a
`TaskAttentionImageEncoder` (the encoder's conv blocks are the shared base;
each task reads them through its own attention masks and ends with its own
image vector), fuses each task's image vector with the other modalities'
features (one fusion layer, called once per task), and ends in one tower
per task (`MTAN`).
"""

from __future__ import annotations

import keras

from keras_mtmm.config.choices import POOLINGS
from keras_mtmm.errors import ConfigError
from keras_mtmm.layers.encoders.image import group_count
from keras_mtmm.layers.encoders.layers import EncoderProjection, MLPBlock, check_activation
from keras_mtmm.layers.sharing.mmoe import check_dropout, check_task_names, check_units
from keras_mtmm.registry import FUSIONS, SHARINGS


def _conv(filters: int, kernel_size: int, name: str, **options) -> keras.layers.Conv2D:
    options.setdefault("kernel_initializer", "he_normal")
    return keras.layers.Conv2D(filters, kernel_size, padding="same", name=name, **options)


@keras.saving.register_keras_serializable(package="keras_mtmm")
class TaskAttentionImageEncoder(keras.layers.Layer):
    """The cnn image encoder's conv blocks as a shared base, read by each task through its own attention masks.

    Shared block j (as `ConvImageEncoder`'s): `s_j = ReLU(GN(conv_j(x_{j-1})))`,
    `x_j = MaxPool(s_j)`. Task t's attention module at block j (MTAN, Sec. 3):

        mask_j^t = sigmoid(conv1x1_b(ReLU(GN(conv1x1_a([s_j, p_{j-1}^t])))))   in (0, 1), [B, H_j, W_j, C_j]
        â_j^t    = mask_j^t ⊙ s_j
        p_j^t    = MaxPool(ReLU(GN(f_j(â_j^t))))   (the last block: MaxPool(â_j^t))

    with `[·, ·]` channel concatenation (block 0 reads s_0 alone) and f_j a
    `kernel_size` conv to the next block's width. As in the authors' code the
    masks are per task and f_j is shared by the tasks. GroupNorm, not the
    paper's BatchNorm, as everywhere in this encoder: batch-independent, so
    serving equals training. Each task's last p^t goes through the image
    head (`pooling`, as `ConvImageEncoder`'s) and its own linear projection
    + LayerNorm to `units`.

    Args:
        task_names: the tasks; the output dict is keyed by them.
        filters, kernel_size, units, dropout, pooling, grid: as `ConvImageEncoder`'s.

    Returns (from `call`):
        `{task: [batch, units]}`, each task's image vector.

    Example:
        >>> encoder = TaskAttentionImageEncoder(["a", "b"], filters=[8, 16], units=32)
        >>> {t: tuple(v.shape) for t, v in encoder(keras.ops.zeros((2, 16, 16, 3))).items()}
        {'a': (2, 32), 'b': (2, 32)}
    """

    modality_types = ("image",)

    def __init__(
        self,
        task_names: list[str],
        filters: list[int],
        kernel_size: int = 3,
        units: int = 64,
        dropout: float = 0.0,
        pooling: str = "grid",
        grid: list[int] = (4, 4),
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = "TaskAttentionImageEncoder"
        self.task_names = check_task_names(owner, task_names)
        self.filters = check_units(owner, "filters", filters, allow_empty=False)
        if kernel_size < 1 or units < 1:
            raise ValueError(f"{owner}: kernel_size and units must be positive, got {kernel_size}, {units}")
        if pooling not in POOLINGS:
            raise ValueError(f"{owner}: pooling must be one of {POOLINGS}, got {pooling!r}")
        grid = [int(g) for g in grid]
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f"{owner}: grid must be [rows, columns] >= 1, got {grid}")
        self.kernel_size = int(kernel_size)
        self.units = int(units)
        self.dropout = check_dropout(owner, dropout)
        self.pooling = pooling
        self.grid = grid
        blocks = range(len(self.filters))
        self.convs = [_conv(f, kernel_size, f"conv_{j}", use_bias=False) for j, f in enumerate(self.filters)]
        self.norms = [
            keras.layers.GroupNormalization(group_count(f), name=f"norm_{j}") for j, f in enumerate(self.filters)
        ]
        self.pools = [keras.layers.MaxPooling2D(2, name=f"pool_{j}") for j in blocks]
        # f_j, shared by the tasks: block j's attended features to block j + 1's width.
        self.shared_convs = [
            _conv(self.filters[j + 1], kernel_size, f"attended_conv_{j}", use_bias=False) for j in blocks[:-1]
        ]
        self.shared_norms = [
            keras.layers.GroupNormalization(group_count(f), name=f"attended_norm_{j}")
            for j, f in enumerate(self.filters[1:])
        ]
        self.attention = {
            task: [
                {
                    "squeeze": _conv(f, 1, f"{task}_mask_{j}_a", use_bias=False),
                    "norm": keras.layers.GroupNormalization(group_count(f), name=f"{task}_mask_{j}_norm"),
                    "mask": _conv(f, 1, f"{task}_mask_{j}_b", kernel_initializer="glorot_uniform"),
                }
                for j, f in enumerate(self.filters)
            ]
            for task in self.task_names
        }
        self.dropout_layer = keras.layers.Dropout(dropout)
        self.projections = {task: EncoderProjection(self.units, name=f"{task}_projection") for task in self.task_names}
        self.head_pool = None  # built with the feature map's size

    def build(self, input_shape):
        shape = tuple(input_shape)
        for j, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            norm.build(shape)
            reads = shape if j == 0 else (*shape[:-1], 2 * shape[-1])  # [s_j, p_{j-1}^t]
            for modules in self.attention.values():
                modules[j]["squeeze"].build(reads)
                modules[j]["norm"].build(shape)
                modules[j]["mask"].build(shape)
            if j < len(self.shared_convs):
                self.shared_convs[j].build(shape)
                self.shared_norms[j].build(self.shared_convs[j].compute_output_shape(shape))
            shape = self.pools[j].compute_output_shape(shape)
        if self.pooling == "average":
            width = shape[-1]
        elif self.pooling == "flatten":
            width = shape[1] * shape[2] * shape[-1]
        else:
            cells = min(self.grid[0], shape[1]), min(self.grid[1], shape[2])
            self.head_pool = keras.layers.AdaptiveAveragePooling2D(cells, name="grid_pool")
            width = cells[0] * cells[1] * shape[-1]
        for projection in self.projections.values():
            projection.build((shape[0], width))

    def _mask(self, task: str, block: int, shared, previous):
        modules = self.attention[task][block]
        reads = shared if previous is None else keras.ops.concatenate([shared, previous], axis=-1)
        hidden = keras.ops.relu(modules["norm"](modules["squeeze"](reads)))
        return keras.ops.sigmoid(modules["mask"](hidden))

    def _attend(self, images):
        """(each task's last feature map `{task: [B, h, w, C]}`, its masks `{task: [mask_j per block]}`)."""
        x = images
        features = dict.fromkeys(self.task_names)
        masks = {task: [] for task in self.task_names}
        for j, (conv, norm, pool) in enumerate(zip(self.convs, self.norms, self.pools)):
            shared = keras.ops.relu(norm(conv(x)))
            for task in self.task_names:
                mask = self._mask(task, j, shared, features[task])
                masks[task].append(mask)
                attended = mask * shared
                if j < len(self.shared_convs):
                    attended = keras.ops.relu(self.shared_norms[j](self.shared_convs[j](attended)))
                features[task] = pool(attended)
            x = pool(shared)
        return features, masks

    def attention_masks(self, images) -> dict:
        """Every task's attention masks, `{task: [[B, H_j, W_j, C_j] per block]}`, each value in (0, 1)."""
        images = keras.ops.convert_to_tensor(images, dtype=self.compute_dtype)
        if not self.built:
            self.build(tuple(images.shape))
        return self._attend(images)[1]

    def _head(self, x):
        height, width, channels = x.shape[1], x.shape[2], x.shape[3]
        if self.pooling == "average":
            return keras.ops.mean(x, axis=(1, 2))
        if self.pooling == "flatten":
            return keras.ops.reshape(x, (-1, height * width * channels))
        x = self.head_pool(x)
        return keras.ops.reshape(x, (-1, x.shape[1] * x.shape[2] * channels))

    def call(self, images, training=None):
        features, _ = self._attend(images)
        return {
            task: self.projections[task](self.dropout_layer(self._head(features[task]), training=training))
            for task in self.task_names
        }

    def compute_output_shape(self, input_shape):
        return {task: (input_shape[0], self.units) for task in self.task_names}

    def get_config(self):
        return {
            **super().get_config(),
            "task_names": self.task_names,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "units": self.units,
            "dropout": self.dropout,
            "pooling": self.pooling,
            "grid": self.grid,
        }


@SHARINGS.register("mtan")
@keras.saving.register_keras_serializable(package="keras_mtmm")
class MTAN(keras.layers.Layer):
    """MTAN's task-specific end: one tower per task, each reading that task's own fused vector.

    The sharing happens before fusion, in the image encoder: with
    `sharing.type: mtan` the model builder makes every cnn image encoder a
    `TaskAttentionImageEncoder` (`build_image_encoder`), fuses each task's
    image vector with the other modalities, and gives this layer the dict of
    per-task fused vectors (`takes_task_inputs`). A single tensor is read by
    every task alike.

    Liu, Johns, Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019.

    Args:
        task_names: the tasks, in order; the output dict is keyed by them.
        tower_units: widths of each task tower's Dense layers (empty: the
            fused vector is the output).
        dropout: dropout rate after every tower layer.
        activation: the towers' activation.

    Example:
        >>> towers = MTAN(["a", "b"], tower_units=[8])
        >>> {t: tuple(v.shape) for t, v in towers({"a": keras.ops.ones((2, 5)), "b": keras.ops.ones((2, 5))}).items()}
        {'a': (2, 8), 'b': (2, 8)}
    """

    takes_task_inputs = True

    @classmethod
    def check_config(cls, options, sharing, config, where: str) -> None:
        """MTAN attends over a cnn image encoder's feature maps and gives each task its own fused vector."""
        if not any(m.type == "image" and m.encoder.type == "cnn" for m in config.modalities.values()):
            raise ConfigError(
                "sharing.type",
                "mtan puts per-task attention on the feature maps of a cnn image encoder, "
                "and no image modality has one",
                "add an image modality with encoder type cnn, or choose another sharing.type (e.g. hard)",
            )
        fusion = FUSIONS.get(config.fusion.strategy, "fusion.strategy")
        if fusion.is_decision_level or getattr(fusion, "takes_sequences", False):
            raise ConfigError(
                "fusion.strategy",
                f"mtan fuses each task's attended image vector with the other modalities, which "
                f"'{config.fusion.strategy}' fusion does not do (it fuses "
                f"{'decisions' if fusion.is_decision_level else 'token sequences'})",
                "use early, intermediate, weighted, gated, attention or low_rank fusion",
            )
        if config.weighting.strategy == "mgda":
            raise ConfigError(
                "weighting.strategy",
                "mgda works on the one shared representation, and mtan gives each task its own",
                "use another weighting.strategy (e.g. pcgrad) or sharing.type",
            )

    @classmethod
    def from_settings(cls, sharing, task_names: list[str], name: str):
        """The layer a `SharingConfig` (`sharing`) describes. (Keras' `from_config` is deserialization.)"""
        return cls(
            task_names,
            tower_units=sharing.tower_units,
            dropout=sharing.dropout,
            activation=sharing.activation,
            name=name,
        )

    def __init__(
        self, task_names: list[str], tower_units: list[int], dropout: float = 0.0, activation: str = "relu", **kwargs
    ):
        super().__init__(**kwargs)
        self.task_names = check_task_names("MTAN", task_names)
        self.tower_units = check_units("MTAN", "tower_units", tower_units, allow_empty=True)
        self.dropout = check_dropout("MTAN", dropout)
        self.activation = check_activation("MTAN", activation)
        self.towers = {
            task: MLPBlock(self.tower_units, dropout, self.activation, name=f"tower_{task}") for task in self.task_names
        }

    @staticmethod
    def build_image_encoder(name: str, encoder, task_names: list[str]) -> TaskAttentionImageEncoder:
        """The per-task attention encoder that replaces modality `name`'s cnn encoder (its `EncoderConfig`)."""
        return TaskAttentionImageEncoder(
            task_names,
            filters=encoder.get().filters,
            kernel_size=encoder.get().kernel_size,
            units=encoder.units,
            dropout=encoder.dropout,
            pooling=encoder.get().pooling,
            grid=encoder.get().grid,
            name=f"{name}_encoder",
        )

    def _per_task(self, value) -> dict:
        return value if isinstance(value, dict) else dict.fromkeys(self.task_names, value)

    def build(self, input_shape):
        shapes = self._per_task(input_shape)
        for task, tower in self.towers.items():
            tower.build(tuple(shapes[task]))

    def call(self, inputs, training=None):
        inputs = self._per_task(inputs)
        return {task: self.towers[task](inputs[task], training=training) for task in self.task_names}

    def compute_output_shape(self, input_shape):
        shapes = self._per_task(input_shape)
        return {task: self.towers[task].compute_output_shape(tuple(shapes[task])) for task in self.task_names}

    def get_config(self):
        return {
            **super().get_config(),
            "task_names": self.task_names,
            "tower_units": self.tower_units,
            "dropout": self.dropout,
            "activation": self.activation,
        }
