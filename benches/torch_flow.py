"""The flow model's networks in PyTorch, as dreamplay builds them (src/model/flow/), for
benches/flow_vs_pytorch.sh: the training throughput of the dynamics and heads (batch 32, a quarter
of it shortcut rows) and the batch-1 dream frame (heads, N sampling steps, decode).

Usage: python torch_flow.py THREADS
"""

import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

C, S, K, A, COND, GROUPS = 4, 16, 4, 1, 128, 8
WIDTHS = (48, 96, 128)
FLOW_LEVEL, FOURIER = 6, 8


def fourier(x):
    freqs = torch.tensor([math.pi / 2 * 2**k for k in range(FOURIER)])
    angle = x[:, None] * freqs[None, :]
    return torch.cat([angle.sin(), angle.cos()], 1)


class AdaNorm(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.norm = nn.GroupNorm(GROUPS, ch, affine=False)
        self.film = nn.Linear(COND, 2 * ch)

    def forward(self, x, cond):
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, 1)
        return self.norm(x) * (1 + scale) + shift


class Block(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.n1, self.c1 = AdaNorm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.n2, self.c2 = AdaNorm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, cond):
        h = self.c1(F.silu(self.n1(x, cond)))
        return self.skip(x) + self.c2(F.silu(self.n2(h, cond)))


class Dynamics(nn.Module):
    def __init__(self):
        super().__init__()
        w0, w1, w2 = WIDTHS
        self.noise = nn.Linear(4 * FOURIER, COND)
        self.step = nn.Embedding(FLOW_LEVEL + 1, COND)
        self.actions = nn.Linear(K * A, COND)
        self.mlp = nn.Sequential(nn.Linear(COND, COND), nn.SiLU(), nn.Linear(COND, COND))
        self.conv_in = nn.Conv2d(C + K * C, w0, 3, padding=1)
        self.down0, self.down1, self.down2 = Block(w0, w0), Block(w1, w1), Block(w2, w2)
        self.d1 = nn.Conv2d(w0, w1, 3, stride=2, padding=1)
        self.d2 = nn.Conv2d(w1, w2, 3, stride=2, padding=1)
        self.middle = Block(w2, w2)
        self.up2, self.up1, self.up0 = Block(2 * w2, w2), Block(2 * w1, w1), Block(2 * w0, w0)
        self.u1 = nn.Conv2d(w2, w1, 3, padding=1)
        self.u0 = nn.Conv2d(w1, w0, 3, padding=1)
        self.norm_out = nn.GroupNorm(GROUPS, w0, affine=False)
        self.conv_out = nn.Conv2d(w0, C, 3, padding=1)

    def forward(self, noisy, context, actions, t, level, ctx_noise):
        cond = self.noise(torch.cat([fourier(t), fourier(ctx_noise)], 1))
        cond = self.mlp(cond + self.step(level) + self.actions(actions))
        x = self.conv_in(torch.cat([noisy, context], 1))
        s0 = self.down0(x, cond)
        s1 = self.down1(self.d1(s0), cond)
        s2 = self.down2(self.d2(s1), cond)
        x = self.up2(torch.cat([self.middle(s2, cond), s2], 1), cond)
        x = self.up1(torch.cat([self.u1(F.interpolate(x, scale_factor=2)), s1], 1), cond)
        x = self.up0(torch.cat([self.u0(F.interpolate(x, scale_factor=2)), s0], 1), cond)
        return self.conv_out(F.silu(self.norm_out(x)))


class Heads(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2 * C, 32, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.hidden, self.out = nn.Linear(64 * (S // 4) ** 2 + A, 64), nn.Linear(64, 2)

    def forward(self, prev, nxt, action):
        x = F.silu(self.c2(F.silu(self.c1(torch.cat([prev, nxt], 1)))))
        return self.out(F.silu(self.hidden(torch.cat([x.flatten(1), action], 1))))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.d_in, self.r2 = nn.Conv2d(C, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1)
        self.up2 = nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)
        self.r1 = nn.Conv2d(32, 32, 3, padding=1)
        self.up1 = nn.ConvTranspose2d(32, 3, 4, stride=2, padding=1)

    def forward(self, z):
        x = F.relu(self.d_in(z))
        x = x + F.relu(self.r2(x))
        x = F.relu(self.up2(x))
        x = x + F.relu(self.r1(x))
        return torch.sigmoid(self.up1(x))


def train_rate(model, heads, steps=10, batch=32, shortcut=8):
    opt = torch.optim.Adam(list(model.parameters()) + list(heads.parameters()), lr=3e-4)

    def step():
        x1, x0 = torch.randn(batch, C, S, S), torch.randn(batch, C, S, S)
        ctx, act = torch.randn(batch, K * C, S, S), torch.randn(batch, K * A)
        level = torch.full((batch,), FLOW_LEVEL)
        level[batch - shortcut:] = torch.randint(0, FLOW_LEVEL, (shortcut,))
        d = 2.0 ** -level.float()
        t = torch.rand(batch)
        noise = torch.rand(batch) * 0.3
        xt = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * x1
        target = x1 - x0
        with torch.no_grad():  # the shortcut rows' two half steps
            r = slice(batch - shortcut, batch)
            half, dh = (level[r] + 1).clamp(max=FLOW_LEVEL), (d[r] / 2)[:, None, None, None]
            v1 = model(xt[r], ctx[r], act[r], t[r], half, noise[r])
            v2 = model(xt[r] + dh * v1, ctx[r], act[r], t[r] + d[r] / 2, half, noise[r])
            target[r] = (v1 + v2) / 2
        loss = F.mse_loss(model(xt, ctx, act, t, level, noise), target)
        out = heads(ctx[:, -C:], x1, act[:, -A:])
        loss = loss + F.binary_cross_entropy_with_logits(out[:, 0], torch.zeros(batch))
        loss = loss + F.mse_loss(out[:, 1], torch.ones(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


@torch.no_grad()
def frame_ms(model, heads, decoder, n_steps, reps=50):
    ctx, act = torch.randn(1, K * C, S, S), torch.zeros(1, K * A)

    def frame():
        heads(ctx[:, -2 * C:-C], ctx[:, -C:], act[:, -A:])
        x, level = torch.randn(1, C, S, S), torch.full((1,), int(math.log2(n_steps)))
        for i in range(n_steps):
            x = x + model(x, ctx, act, torch.full((1,), i / n_steps), level, torch.full((1,), 0.05)) / n_steps
        decoder(x)

    frame()
    start = time.perf_counter()
    for _ in range(reps):
        frame()
    return (time.perf_counter() - start) * 1e3 / reps


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, heads, decoder = Dynamics(), Heads(), Decoder()
    print(f"threads {threads}: flow training batch 32 = {train_rate(model, heads):.1f} samples/s")
    for n in (1, 2, 4):
        print(f"threads {threads}: flow dream frame {n} step(s) = {frame_ms(model, heads, decoder, n):.2f} ms")


if __name__ == "__main__":
    main()
