"""The torch modules behind the registered models."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
}
OUTPUT_ACTIVATIONS = {
    "none": None,
    "softmax": lambda: nn.Softmax(dim=-1),
    "log_softmax": lambda: nn.LogSoftmax(dim=-1),
    "sigmoid": nn.Sigmoid,
}


class MLP(nn.Sequential):
    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        hidden: Sequence[int],
        activation: str,
        dropout: float,
        batch_norm: bool,
        output_activation: str = "none",
    ):
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size in hidden:
            layers.append(nn.Linear(width, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, num_outputs))
        make_output = OUTPUT_ACTIVATIONS[output_activation]
        if make_output is not None:
            layers.append(make_output())
        super().__init__(*layers)


class CNN(nn.Sequential):
    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        channels: Sequence[int],
        hidden: int,
        activation: str,
        dropout: float,
        batch_norm: bool,
    ):
        in_channels, height, width = input_shape
        layers: list[nn.Module] = []
        for out_channels in channels:
            layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(ACTIVATIONS[activation]())
            # Pool only while the map is large enough: 8×8 digits survive two or three blocks.
            if min(height, width) >= 4:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            in_channels = out_channels
        layers += [nn.Flatten(), nn.Linear(in_channels * height * width, hidden), ACTIVATIONS[activation]()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(hidden, num_outputs))
        super().__init__(*layers)


class AudioCNN(nn.Module):
    """The small CNN of keyword-spotting baselines: 3×3 convolution blocks (batch norm, activation,
    2×2 max-pooling) over log-mel frames (1×frames×n_mels), then the mean over time into a linear
    head. Frequency keeps its place (a low and a high tone differ only in where they are); time
    does not (a word is the same word a little later). Over a waveform (1×samples) the same shape
    in one dimension after a wide strided first layer that learns its own filters (M5, Dai et al.
    2017: 80-sample kernels, stride 4, pooling by 4), and the mean over time."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        channels: Sequence[int],
        activation: str,
        dropout: float,
        batch_norm: bool,
    ):
        super().__init__()
        two_d = len(input_shape) == 3
        conv, norm, pool = (
            (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if two_d else (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d)
        )
        sizes = list(input_shape[1:])
        layers: list[nn.Module] = []
        in_channels = input_shape[0]
        for index, out_channels in enumerate(channels):
            wide = not two_d and index == 0
            layers.append(
                conv(in_channels, out_channels, 80 if wide else 3, stride=4 if wide else 1, padding=38 if wide else 1)
            )
            if wide:
                sizes = [(size - 4) // 4 + 1 for size in sizes]
            if batch_norm:
                layers.append(norm(out_channels))
            layers.append(ACTIVATIONS[activation]())
            factor = 2 if two_d else 4
            if min(sizes) >= factor:  # pool while the map is large enough
                layers.append(pool(factor))
                sizes = [size // factor for size in sizes]
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        width = in_channels * (sizes[1] if two_d else 1)  # channels × the mel bands left
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, num_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mapped = self.features(x)  # (batch, channels, frames, bands) or (batch, channels, samples)
        return self.head(mapped.mean(dim=2).flatten(1))  # the mean over time


class SequenceClassifier(nn.Module):
    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        cell: str,
        hidden_size: int,
        layers: int,
        bidirectional: bool,
        dropout: float,
    ):
        super().__init__()
        recurrent = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        self.steps, features = input_shape
        self.recurrent = recurrent(
            features,
            hidden_size,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sequence = x.reshape(x.shape[0], self.steps, -1)
        outputs, _ = self.recurrent(sequence)
        return self.head(outputs[:, -1])


class TokenSequenceClassifier(nn.Module):
    """Token ids to embeddings to a recurrent layer whose final state (per direction) feeds a linear
    head. The sequences are packed by their true lengths, so padding never enters the recurrence:
    a text's output is the same however long the batch around it is padded."""

    def __init__(
        self,
        vocabulary_size: int,
        embedding_dim: int,
        num_outputs: int,
        cell: str,
        hidden_size: int,
        layers: int,
        bidirectional: bool,
        dropout: float,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary_size, embedding_dim, padding_idx=0)
        recurrent = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        self.recurrent = recurrent(
            embedding_dim,
            hidden_size,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.directions = 2 if bidirectional else 1
        self.head = nn.Linear(hidden_size * self.directions, num_outputs)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        lengths = (ids != 0).sum(dim=1).clamp(min=1).cpu()  # an empty text reads one padding token
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(ids), lengths, batch_first=True, enforce_sorted=False)
        _, state = self.recurrent(packed)
        final = state[0] if isinstance(state, tuple) else state  # an LSTM's state is (hidden, cell)
        return self.head(torch.cat(list(final[-self.directions :]), dim=1))


class BagOfEmbeddings(nn.Module):
    """The mean of a text's token embeddings, padding left out, then an optional hidden layer."""

    def __init__(self, vocabulary_size: int, dim: int, hidden: int, outputs: int):
        super().__init__()
        self.bag = nn.EmbeddingBag(vocabulary_size, dim, mode="mean", padding_idx=0)
        layers: list[nn.Module] = (
            [nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, outputs)] if hidden else [nn.Linear(dim, outputs)]
        )
        self.head = nn.Sequential(*layers)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.bag(ids.long()))


def _pair(sizes: tuple[int, ...]) -> tuple[int, int]:
    """A Conv2d's size as the pair it is; torch types the sizes of every convolution as tuples of any length."""
    first, second = sizes
    return first, second


def adapt_first_conv(model: nn.Module, channels: int) -> None:
    """Give the first convolution `channels` inputs (architectures are built for RGB)."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                if child.in_channels != channels:
                    setattr(
                        parent,
                        name,
                        nn.Conv2d(
                            channels,
                            child.out_channels,
                            _pair(child.kernel_size),
                            _pair(child.stride),
                            child.padding if isinstance(child.padding, str) else _pair(child.padding),
                            _pair(child.dilation),
                            child.groups,
                            child.bias is not None,
                        ),
                    )
                return


def load_matching_weights(model: nn.Module, path: str) -> None:
    """Load a local state-dict file, leaving out tensors whose shapes differ here (the classifier for
    another number of classes, the first convolution for other channels)."""
    from pathlib import Path

    from trainctl.errors import UserError

    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"model.weights: {file}: file not found (a state-dict file; nothing is downloaded)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # pickled code, a corrupt file: never run it, say why
        raise UserError(f"model.weights: {file}: cannot load as weights: {str(error).splitlines()[0]}") from None
    state = state.get("model", state) if isinstance(state, dict) else state
    own = model.state_dict()
    matching = {key: value for key, value in state.items() if key in own and own[key].shape == value.shape}
    if not matching:
        raise UserError(f"model.weights: {file}: none of its tensors fit this architecture")
    model.load_state_dict(matching, strict=False)
