"""The digits CNN: a small convolutional classifier for scikit-learn's 8x8 digits.

Input:  float32 NCHW [N, 1, 8, 8], pixel values (0..16 in load_digits) divided by 16.0.
Output: float32 [N, 10] logits.

Every convolution is followed by BatchNorm so that the BN-folding pass has work to do.
"""

import torch
from torch import nn


def _conv_bn_relu(cin: int, cout: int, stride: int = 1, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DigitsCNN(nn.Module):
    """Conv 1->16 (8x8) -> Conv 16->32 stride 2 (4x4) -> Conv 32->64 (4x4) -> GAP -> Linear 64->10."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_relu(1, 16),
            _conv_bn_relu(16, 32, stride=2),
            _conv_bn_relu(32, 64),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(x)
