"""A user's own network holding a TAM class written the way the official TANet code writes it
(``n_segment``, grouped conv over a [1, N*C, T, H*W] view), independent of tamdeploy's modules."""

import torch
import torch.nn.functional as F
from torch import nn

T = 4


class TAM(nn.Module):
    def __init__(self, in_channels, n_segment, kernel_size=3, stride=1, padding=1):
        super().__init__()
        self.in_channels = in_channels
        self.n_segment = n_segment
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.G = nn.Sequential(
            nn.Linear(n_segment, n_segment * 2, bias=False), nn.BatchNorm1d(n_segment * 2), nn.ReLU(inplace=True),
            nn.Linear(n_segment * 2, kernel_size, bias=False), nn.Softmax(-1))
        self.L = nn.Sequential(
            nn.Conv1d(in_channels, in_channels // 4, kernel_size, stride=1, padding=kernel_size // 2, bias=False),
            nn.BatchNorm1d(in_channels // 4), nn.ReLU(inplace=True),
            nn.Conv1d(in_channels // 4, in_channels, 1, bias=False), nn.Sigmoid())

    def forward(self, x):
        nt, c, h, w = x.size()
        t = self.n_segment
        n_batch = nt // t
        new_x = x.view(n_batch, t, c, h, w).permute(0, 2, 1, 3, 4).contiguous()
        out = F.adaptive_avg_pool2d(new_x.view(n_batch * c, t, h, w), (1, 1)).view(-1, t)
        conv_kernel = self.G(out).view(n_batch * c, 1, -1, 1)
        local_activation = self.L(out.view(n_batch, c, t)).view(n_batch, c, t, 1, 1)
        new_x = new_x * local_activation
        out = F.conv2d(new_x.view(1, n_batch * c, t, h * w), conv_kernel, bias=None,
                       stride=(self.stride, 1), padding=(self.padding, 0), groups=n_batch * c)
        return out.view(n_batch, c, t, h, w).permute(0, 2, 1, 3, 4).contiguous().view(nt, c, h, w)


class TinyTANet(nn.Module):
    def __init__(self, num_classes=6):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.tam = TAM(16, T, kernel_size=5, padding=2)
        self.conv = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, video):
        n = video.shape[0]
        x = self.stem(video.reshape((-1,) + tuple(video.shape[2:])))
        x = torch.relu(self.conv(self.tam(x)))
        x = self.fc(x.mean(dim=(2, 3)))
        return x.view(n, T, -1).mean(1)


def build():
    return TinyTANet()


class DriftsWhenExported(TinyTANet):
    """Computes something else under export (a real-world bug class: export-only branches)."""

    def forward(self, video):
        out = super().forward(video)
        return out * 1.01 if torch.compiler.is_exporting() else out


def build_drifting():
    return DriftsWhenExported()


def build_raising():
    """A factory with a bug of the user's own."""
    raise RuntimeError("boom")


class PlainVideoNet(nn.Module):
    """A video network with no TAM/ACTION module: only --num-segments says its T."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, video):
        n, t = video.shape[:2]
        return self.fc(self.conv(video.flatten(0, 1)).mean((2, 3))).view(n, t, -1).mean(1)


def build_plain_video():
    return PlainVideoNet()
