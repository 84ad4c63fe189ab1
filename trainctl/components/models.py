"""Models. Input size and number of outputs come from the dataset and the loss, never the config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from trainctl.errors import UserError
from trainctl.limits import MAX_WIDTH, Layers, Width
from trainctl.registry import Registry


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    input: str  # the inputs it reads, in words


MODELS = Registry("model", ModelInfo)

Activation = Literal["relu", "gelu", "tanh", "sigmoid", "silu", "leaky_relu"]
OutputActivation = Literal["none", "softmax", "log_softmax", "sigmoid"]
Dropout = Annotated[float, Field(ge=0, lt=1)]


@dataclass(frozen=True)
class ModelContext:
    input_shape: tuple[int, ...]  # one sample, e.g. (1, 8, 8) or (30,)
    num_outputs: int
    vocabulary_size: int = 0  # token-id inputs (text datasets): how many ids there are; else 0


@MODELS.register(
    "mlp",
    summary="Fully connected layers; any input is flattened",
    input="any",
)
def mlp(
    context: ModelContext,
    *,
    # A list default is the config's value as it is written; builders never change their parameters.
    hidden: list[Width] = [256, 256],  # noqa: B006  sizes of the hidden layers
    activation: Activation = "relu",
    dropout: Dropout = 0.0,
    batch_norm: bool = False,
    # Left at none for losses that take logits; the others exist so mistakes can be expressed and caught.
    output_activation: OutputActivation = "none",
) -> Any:
    from trainctl.nn.networks import MLP

    return MLP(context.input_shape, context.num_outputs, hidden, activation, dropout, batch_norm, output_activation)


@MODELS.register(
    "cnn",
    summary="Small conv net: 3×3 conv blocks with max-pooling, then a fully connected head",
    input="image C×H×W",
)
def cnn(
    context: ModelContext,
    *,
    channels: list[Width] = [32, 64],  # noqa: B006  one conv block per entry
    hidden: Width = 128,  # width of the fully connected layer
    activation: Activation = "relu",
    dropout: Dropout = 0.25,
    batch_norm: bool = True,
) -> Any:
    from trainctl.nn.networks import CNN

    if len(context.input_shape) != 3:
        raise UserError(f"model 'cnn' needs image-shaped input (C×H×W); this dataset gives {context.input_shape}")
    return CNN(context.input_shape, context.num_outputs, channels, hidden, activation, dropout, batch_norm)


@MODELS.register(
    "audio_cnn",
    summary="Keyword-spotting CNN: conv blocks over log-mel frames (1-D over a waveform), mean over time, linear head",
    input="audio features 1×frames×n_mels or 1×samples",
)
def audio_cnn(
    context: ModelContext,
    *,
    channels: list[Width] = [16, 32, 64],  # noqa: B006  one conv block per entry
    activation: Activation = "relu",
    dropout: Dropout = 0.1,  # before the linear head
    batch_norm: bool = True,
) -> Any:
    from trainctl.nn.networks import AudioCNN

    if len(context.input_shape) not in (2, 3) or context.input_shape[0] != 1:
        raise UserError(
            f"model 'audio_cnn' reads audio features (1×frames×n_mels log-mel, or a 1×samples waveform); "
            f"this dataset gives {context.input_shape}"
        )
    return AudioCNN(context.input_shape, context.num_outputs, channels, activation, dropout, batch_norm)


@MODELS.register(
    "rnn",
    summary="LSTM/GRU/RNN over a sequence (an image is read row by row, log-mel audio frame by frame, text as token embeddings); the last state feeds a linear head",
    input="sequence T×F, image 1×H×W, or token ids",
)
def rnn(
    context: ModelContext,
    *,
    cell: Literal["lstm", "gru", "rnn"] = "lstm",
    hidden_size: Width = 64,
    layers: Layers = 1,
    bidirectional: bool = False,
    dropout: Dropout = 0.0,  # between stacked layers
    embedding_dim: Width = 64,  # for text: the size of each token's vector
) -> Any:
    from trainctl.nn.networks import SequenceClassifier, TokenSequenceClassifier

    if context.vocabulary_size:  # token ids: embed them, then read each text to its last token
        return TokenSequenceClassifier(
            context.vocabulary_size,
            embedding_dim,
            context.num_outputs,
            cell,
            hidden_size,
            layers,
            bidirectional,
            dropout,
        )
    shape = context.input_shape
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 2:
        raise UserError(
            f"model 'rnn' needs sequence input (T×F) or a one-channel image; this dataset gives {context.input_shape}"
        )
    return SequenceClassifier(shape, context.num_outputs, cell, hidden_size, layers, bidirectional, dropout)


@MODELS.register(
    "embedding_bag",
    summary="Text baseline: the mean of the tokens' embeddings (padding left out), then a linear head",
    input="token ids",
)
def embedding_bag(
    context: ModelContext,
    *,
    embedding_dim: Width = 64,
    hidden: Annotated[int, Field(ge=0, le=MAX_WIDTH)] = 0,  # 0: straight to the outputs
) -> Any:
    from trainctl.nn.networks import BagOfEmbeddings

    if not context.vocabulary_size:
        raise UserError("model 'embedding_bag' reads token ids; use it with the text dataset")
    return BagOfEmbeddings(context.vocabulary_size, embedding_dim, hidden, context.num_outputs)


@MODELS.register(
    "torchvision",
    summary="Any classification architecture in torchvision's registry by name (resnet18, efficientnet_b0, ...)",
    input="image C×H×W",
)
def torchvision_model(
    context: ModelContext,
    *,
    arch: str = "resnet18",
    weights: str = "none",  # none (random initialisation), or a local state-dict file; nothing is downloaded
) -> Any:
    from trainctl.data.images import torchvision
    from trainctl.nn.networks import adapt_first_conv, load_matching_weights
    from trainctl.registry import suggest

    models = torchvision("model 'torchvision'").models
    names = models.list_models(module=models)  # the classification models
    if arch not in names:
        raise UserError(
            f"model.arch: {arch!r} is not a torchvision classification architecture{suggest(arch, names)}; "
            f"e.g. {', '.join(names[:6])}, ... (see torchvision.models.list_models())"
        )
    if len(context.input_shape) != 3:
        raise UserError(
            f"model 'torchvision' needs image-shaped input (C×H×W); this dataset gives {context.input_shape}"
        )
    model = models.get_model(arch, weights=None, num_classes=context.num_outputs)
    adapt_first_conv(model, context.input_shape[0])  # e.g. 1-channel MNIST into a 3-channel architecture
    if weights != "none":
        load_matching_weights(model, weights)
    return model
