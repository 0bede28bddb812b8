"""A zoo of plain `torch.nn` models (no torchvision) and their `Network`s.

LeNet-5, a small CNN for 8x8 digits, ResNet-18 (ImageNet and CIFAR stems), ResNet-20 (CIFAR,
option-A shortcuts as in He et al.), VGG-11, MobileNetV2 (ImageNet and CIFAR strides) and
AlexNet (the torchvision variant). `network(name)` builds the model on the ``meta`` device, so
importing even VGG-11 allocates no weights and computes nothing.

Published figures the tests hold the zoo to: ResNet-18 at 224x224, 1.82 G MACs and 11.69 M
parameters; MobileNetV2 at 224x224, ~300 M MACs and 3.5 M parameters; ResNet-20, 0.27 M
parameters and ~41 M MACs; VGG-11, 132.9 M parameters; AlexNet, 61.1 M parameters; LeNet-5,
61.7 k parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layer import MappingError
from .network import Network
from .torch_import import from_torch


# --- models -------------------------------------------------------------------------------

class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) on 1x32x32 inputs, average pooling, ReLU."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool1 = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool2 = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class DigitsCNN(nn.Module):
    """A small CNN for scikit-learn's 1x8x8 digits."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(32 * 4 * 4, num_classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = self.pool(F.relu(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


class BasicBlock(nn.Module):
    """ResNet basic block; `shortcut` is 'B' (1x1 conv projection) or 'A' (subsample + zero-pad)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, shortcut: str = "B"):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = 0
        self.downsample = None
        if stride != 1 or cin != cout:
            if shortcut == "B":
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            else:
                self.pad = (cout - cin) // 2
        self.stride = stride

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            x = self.downsample(x)
        elif self.pad:
            x = F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + x)


class ResNet(nn.Module):
    """ResNet with basic blocks; `stem` 'imagenet' (7x7/2 + max pool) or 'cifar' (3x3/1)."""

    def __init__(self, blocks=(2, 2, 2, 2), widths=(64, 128, 256, 512), num_classes: int = 1000,
                 stem: str = "imagenet", shortcut: str = "B"):
        super().__init__()
        w0 = widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, w0, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(3, w0, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(w0)
        layers = []
        cin = w0
        for i, (n, w) in enumerate(zip(blocks, widths)):
            stage = []
            for j in range(n):
                stage.append(BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1, shortcut))
                cin = w
            layers.append(nn.Sequential(*stage))
        self.layers = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layers(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000, stem: str = "imagenet") -> ResNet:
    """ResNet-18 (He et al. 2016)."""
    return ResNet((2, 2, 2, 2), (64, 128, 256, 512), num_classes, stem, "B")


def resnet20(num_classes: int = 10) -> ResNet:
    """ResNet-20 for CIFAR (He et al. 2016, option-A shortcuts)."""
    return ResNet((3, 3, 3), (16, 32, 64), num_classes, "cifar", "A")


class VGG(nn.Module):
    """VGG (Simonyan & Zisserman 2015) without batch-norm; `cifar` uses a 512 -> classes head."""

    def __init__(self, cfg=(64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
                 num_classes: int = 1000, cifar: bool = False):
        super().__init__()
        feats: list[nn.Module] = []
        cin = 3
        for v in cfg:
            if v == "M":
                feats.append(nn.MaxPool2d(2, 2))
            else:
                feats += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*feats)
        if cifar:
            self.avgpool = nn.Identity()
            self.classifier = nn.Sequential(nn.Linear(512, num_classes))
        else:
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, num_classes))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual block."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(inplace=True), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018), width 1.0; `cifar` keeps 32x32 inputs at 4x4 at the end."""

    CFG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes: int = 1000, cifar: bool = False):
        super().__init__()
        cfg = [list(c) for c in self.CFG]
        if cifar:
            cfg[1][3] = 1  # as the common CIFAR port: stem stride 1 and the first stride-2 stage at 1
        feats: list[nn.Module] = [nn.Conv2d(3, 32, 3, 1 if cifar else 2, 1, bias=False), nn.BatchNorm2d(32),
                                  nn.ReLU6(inplace=True)]
        cin = 32
        for t, c, n, s in cfg:
            for i in range(n):
                feats.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        feats += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*feats)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class AlexNet(nn.Module):
    """AlexNet, the single-tower variant of torchvision (Krizhevsky 2014, 'one weird trick')."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, num_classes))

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# --- registry -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ZooEntry:
    """A zoo model: builder, input shape (C, H, W), default classes, one-line description."""

    build: Callable[..., nn.Module]
    input_shape: tuple[int, int, int]
    num_classes: int
    description: str


ZOO: dict[str, ZooEntry] = {
    "lenet5": ZooEntry(LeNet5, (1, 32, 32), 10, "LeNet-5, 1x32x32"),
    "digits_cnn": ZooEntry(DigitsCNN, (1, 8, 8), 10, "small CNN for 8x8 digits"),
    "resnet18": ZooEntry(lambda num_classes: resnet18(num_classes, "imagenet"), (3, 224, 224), 1000,
                         "ResNet-18, ImageNet stem, 224x224"),
    "resnet18_cifar": ZooEntry(lambda num_classes: resnet18(num_classes, "cifar"), (3, 32, 32), 10,
                               "ResNet-18, CIFAR stem, 32x32"),
    "resnet20": ZooEntry(resnet20, (3, 32, 32), 10, "ResNet-20 (CIFAR), 32x32"),
    "vgg11": ZooEntry(lambda num_classes: VGG(num_classes=num_classes), (3, 224, 224), 1000, "VGG-11, 224x224"),
    "vgg11_cifar": ZooEntry(lambda num_classes: VGG(num_classes=num_classes, cifar=True), (3, 32, 32), 10,
                            "VGG-11, CIFAR head, 32x32"),
    "mobilenetv2": ZooEntry(lambda num_classes: MobileNetV2(num_classes), (3, 224, 224), 1000,
                            "MobileNetV2 1.0, 224x224"),
    "mobilenetv2_cifar": ZooEntry(lambda num_classes: MobileNetV2(num_classes, cifar=True), (3, 32, 32), 10,
                                  "MobileNetV2 1.0, CIFAR strides, 32x32"),
    "alexnet": ZooEntry(AlexNet, (3, 224, 224), 1000, "AlexNet (torchvision variant), 224x224"),
}


def names() -> list[str]:
    """Zoo model names."""
    return list(ZOO)


def _entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise MappingError(f"unknown zoo model {name!r}: expected one of {', '.join(ZOO)}") from None


def model(name: str, num_classes: int | None = None, device: str = "cpu") -> nn.Module:
    """A fresh (untrained) instance of zoo model `name`."""
    e = _entry(name)
    with torch.device(device):
        return e.build(num_classes=num_classes or e.num_classes)


@lru_cache(maxsize=32)
def _network(name: str, num_classes: int, batch: int, hw: int | None) -> Network:
    e = _entry(name)
    m = model(name, num_classes, device="meta").eval()
    c, h, w = e.input_shape
    if hw is not None:
        h = w = hw
    x = torch.empty(batch, c, h, w, device="meta")
    return from_torch(m, x, name=name)


def network(name: str, num_classes: int | None = None, batch: int = 1, input_hw: int | None = None) -> Network:
    """The `Network` of zoo model `name` (cached; do not mutate the result)."""
    e = _entry(name)
    return _network(name, num_classes or e.num_classes, batch, input_hw)
