//! V's convolutions on burn-flex as one batch-wide im2col and one GEMM each, with their own
//! backward pass: what V trains, encodes and decodes with on the CPU.
//!
//! Why by hand (a departure, see the README): burn-flex 0.21 runs a conv as one small GEMM per
//! image and per 512-pixel tile (V's last encoder conv becomes 32 products of `[256 x 2048] x
//! [2048 x 4]`), and burn's default conv backward runs the weight gradient as a conv over
//! batch/channel-swapped views, which burn-flex first copies element by element. Here every conv
//! and transposed conv of a batch is a single `gemm` call (the crate burn-flex itself uses) over
//! an im2col matrix of the whole batch, forward and backward. It is the same maths as burn's ops;
//! `tests/model.rs` checks outputs and all three gradients against them.
//!
//! Only what V needs is covered: no padding, no dilation, one group, a bias, f32. Anything else,
//! and every backend other than flex, goes through burn's own ops.

use std::any::TypeId;
use std::ops::Range;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::prelude::*;
use burn::tensor::{TensorData, TensorPrimitive};
use rayon::prelude::*;

use super::same_type_cast as cast;

/// The backend V trains on with the CPU.
type FlexAutodiff = Autodiff<Flex>;

/// `layer.forward(x)`, through the batch-wide GEMM path when `B` is flex (with or without
/// autodiff) and the layer is one it covers.
pub fn conv2d<B: Backend>(layer: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    try_conv2d(layer, x).unwrap_or_else(|x| layer.forward(x))
}

/// `layer.forward(x)` for a transposed conv, as [`conv2d`].
pub fn conv_transpose2d<B: Backend>(layer: &ConvTranspose2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    try_conv_transpose2d(layer, x).unwrap_or_else(|x| layer.forward(x))
}

/// [`conv2d`] on the GEMM path, or `Err(x)` untouched where the path does not cover the backend
/// or the layer.
pub fn try_conv2d<B: Backend>(
    layer: &Conv2d<B>,
    x: Tensor<B, 4>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let shape = (
        layer.stride,
        layer.kernel_size,
        layer.dilation,
        layer.groups,
    );
    let covered = matches!(layer.padding, PaddingConfig2d::Valid) && plain(shape);
    let parts = (&layer.weight, layer.bias.as_ref());
    try_forward(Kind::Conv, covered, layer.stride[0], parts, x)
}

/// [`conv_transpose2d`] on the GEMM path, or `Err(x)` as [`try_conv2d`].
pub fn try_conv_transpose2d<B: Backend>(
    layer: &ConvTranspose2d<B>,
    x: Tensor<B, 4>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let shape = (
        layer.stride,
        layer.kernel_size,
        layer.dilation,
        layer.groups,
    );
    let covered = layer.padding == [0, 0] && layer.padding_out == [0, 0] && plain(shape);
    let parts = (&layer.weight, layer.bias.as_ref());
    try_forward(Kind::Transposed, covered, layer.stride[0], parts, x)
}

/// The GEMM path for a covered layer with a bias; `Err(x)` untouched otherwise.
fn try_forward<B: Backend>(
    kind: Kind,
    covered: bool,
    stride: usize,
    (weight, bias): (&Param<Tensor<B, 4>>, Option<&Param<Tensor<B, 1>>>),
    x: Tensor<B, 4>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    match (covered, bias) {
        (true, Some(bias)) => forward(kind, stride, x, weight.val(), bias.val()),
        _ => Err(x),
    }
}

/// A square kernel and stride, no dilation and one group: the layers the GEMM path covers
/// (besides padding, which the two layer types state differently).
fn plain((stride, kernel, dilation, groups): ([usize; 2], [usize; 2], [usize; 2], usize)) -> bool {
    dilation == [1, 1] && groups == 1 && stride[0] == stride[1] && kernel[0] == kernel[1]
}

/// A conv or a transposed conv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Conv,
    Transposed,
}

/// Runs the GEMM path if `B` is flex or autodiff over flex and the tensors are f32; otherwise
/// gives `x` back untouched.
fn forward<B: Backend>(
    kind: Kind,
    stride: usize,
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let f32 = burn::tensor::DType::F32;
    if x.dtype() != f32 || weight.dtype() != f32 || bias.dtype() != f32 {
        return Err(x);
    }
    let backend = TypeId::of::<B>();
    if backend == TypeId::of::<Flex>() {
        let [x, weight] = [x, weight].map(|t| cast::<_, Tensor<Flex, 4>>(t).into_primitive());
        let bias = cast::<_, Tensor<Flex, 1>>(bias).into_primitive();
        let (x, weight, bias) = (x.tensor(), weight.tensor(), bias.tensor());
        let (out, _, _) = flex_forward(kind, stride, &x, &weight, &bias);
        Ok(cast(Tensor::<Flex, 4>::from_primitive(
            TensorPrimitive::Float(out),
        )))
    } else if backend == TypeId::of::<FlexAutodiff>() {
        let [x, weight] = [x, weight].map(|t| {
            cast::<_, Tensor<FlexAutodiff, 4>>(t)
                .into_primitive()
                .tensor()
        });
        let bias = cast::<_, Tensor<FlexAutodiff, 1>>(bias)
            .into_primitive()
            .tensor();
        let out = autodiff_forward(kind, stride, x, weight, bias);
        Ok(cast(Tensor::<FlexAutodiff, 4>::from_primitive(
            TensorPrimitive::Float(out),
        )))
    } else {
        Err(x)
    }
}

/// The sizes of one conv call. For a conv `image` is the input and `grid` the output; for a
/// transposed conv `image` is the output and `grid` the input. Either way the im2col matrix is
/// `[image_channels * k * k, batch * grid_h * grid_w]`.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    batch: usize,
    /// Channels, height, width of the side the kernel windows cover.
    image: [usize; 3],
    /// Channels, height, width of the other side (one window per pixel).
    grid: [usize; 3],
    k: usize,
    stride: usize,
}

impl Geometry {
    fn new(kind: Kind, stride: usize, x_shape: &[usize], w_shape: &[usize]) -> Self {
        let [batch, c_in, h, w] = [x_shape[0], x_shape[1], x_shape[2], x_shape[3]];
        let k = w_shape[2];
        match kind {
            // Weight [c_out, c_in, k, k].
            Kind::Conv => Self {
                batch,
                image: [c_in, h, w],
                grid: [w_shape[0], (h - k) / stride + 1, (w - k) / stride + 1],
                k,
                stride,
            },
            // Weight [c_in, c_out, k, k].
            Kind::Transposed => Self {
                batch,
                image: [w_shape[1], (h - 1) * stride + k, (w - 1) * stride + k],
                grid: [c_in, h, w],
                k,
                stride,
            },
        }
    }

    /// Rows of the im2col matrix.
    fn patch_len(&self) -> usize {
        self.image[0] * self.k * self.k
    }

    /// Columns of the im2col matrix.
    fn positions(&self) -> usize {
        self.batch * self.grid[1] * self.grid[2]
    }

    fn image_shape(&self) -> [usize; 4] {
        [self.batch, self.image[0], self.image[1], self.image[2]]
    }

    fn grid_shape(&self) -> [usize; 4] {
        [self.batch, self.grid[0], self.grid[1], self.grid[2]]
    }

    fn output_shape(&self, kind: Kind) -> [usize; 4] {
        match kind {
            Kind::Conv => self.grid_shape(),
            Kind::Transposed => self.image_shape(),
        }
    }
}

/// The forward on flex tensors: the output, and what the backward pass reuses (the im2col
/// matrix of a conv, the channel-major input of a transposed conv).
fn flex_forward(
    kind: Kind,
    stride: usize,
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
) -> (FlexTensor, Vec<f32>, Geometry) {
    let geometry = Geometry::new(kind, stride, x.layout().shape(), weight.layout().shape());
    let [x, weight, bias] = [x, weight, bias].map(FlexTensor::to_contiguous);
    let (out, saved) = match kind {
        Kind::Conv => conv_forward(&geometry, f32s(&x), f32s(&weight), f32s(&bias)),
        Kind::Transposed => transposed_forward(&geometry, f32s(&x), f32s(&weight), f32s(&bias)),
    };
    (
        flex_tensor(out, geometry.output_shape(kind)),
        saved,
        geometry,
    )
}

/// The autodiff op: the forward above, and a backward that gives x, weight and bias their
/// gradients from the matrices the forward kept.
#[derive(Debug)]
struct GemmConvBackward;

/// What the backward pass needs: the forward's saved matrix, its weight (contiguous), and the
/// sizes.
type BackwardState = (Arc<Vec<f32>>, FlexTensor, Kind, Geometry);

impl Backward<Flex, 3> for GemmConvBackward {
    type State = BackwardState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (saved, weight, kind, g) = ops.state;
        let weight_shape = weight.layout().shape().to_vec();
        let want_x = node_x.is_some();
        let (dx, dweight, dbias) = match kind {
            Kind::Conv => conv_backward(&g, &saved, f32s(&weight), f32s(&grad), want_x),
            Kind::Transposed => transposed_backward(&g, &saved, f32s(&weight), f32s(&grad), want_x),
        };
        if let (Some(node), Some(dx)) = (node_x, dx) {
            let x_shape = match kind {
                Kind::Conv => g.image_shape(),
                Kind::Transposed => g.grid_shape(),
            };
            grads.register::<Flex>(node.id, flex_tensor(dx, x_shape));
        }
        if let Some(node) = node_weight {
            grads.register::<Flex>(node.id, flex_tensor(dweight, weight_shape));
        }
        if let Some(node) = node_bias {
            let len = dbias.len();
            grads.register::<Flex>(node.id, flex_tensor(dbias, [len]));
        }
    }
}

type FlexAutodiffTensor = burn::tensor::ops::FloatTensor<FlexAutodiff>;

fn autodiff_forward(
    kind: Kind,
    stride: usize,
    x: FlexAutodiffTensor,
    weight: FlexAutodiffTensor,
    bias: FlexAutodiffTensor,
) -> FlexAutodiffTensor {
    match GemmConvBackward
        .prepare::<NoCheckpointing>([x.node.clone(), weight.node.clone(), bias.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let weight = weight.primitive.to_contiguous();
            let (out, saved, geometry) =
                flex_forward(kind, stride, &x.primitive, &weight, &bias.primitive);
            prep.finish((Arc::new(saved), weight, kind, geometry), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(
            flex_forward(
                kind,
                stride,
                &x.primitive,
                &weight.primitive,
                &bias.primitive,
            )
            .0,
        ),
    }
}

fn f32s(t: &FlexTensor) -> &[f32] {
    // Callers pass contiguous f32 tensors (checked by `forward` and made by `to_contiguous`).
    t.as_slice::<f32>().unwrap_or(&[])
}

fn flex_tensor<S: Into<Shape>>(data: Vec<f32>, shape: S) -> FlexTensor {
    let shape = shape.into();
    debug_assert_eq!(data.len(), shape.num_elements());
    FlexTensor::from_data(TensorData::new(data, shape))
}

// ---- The maths, on plain slices (row-major NCHW). ----

/// Conv forward: `out[b, o] = bias[o] + sum W[o, c, i, j] x[b, c, y*s + i, x*s + j]`, as
/// `[c_out, patch] x im2col(x)`.
/// Returns the output and the im2col matrix (for the backward pass).
fn conv_forward(g: &Geometry, x: &[f32], weight: &[f32], bias: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (rows, n, c_out) = (g.patch_len(), g.positions(), g.grid[0]);
    let cols = im2col(x, g);
    let mut out = vec![0.0; c_out * n];
    for (row, &b) in out.chunks_mut(n).zip(bias) {
        row.fill(b);
    }
    matmul(
        &mut out,
        true,
        Mat::row_major(weight, c_out, rows),
        Mat::row_major(&cols, rows, n),
    );
    (
        swap_leading(&out, c_out, g.batch, g.grid[1] * g.grid[2]),
        cols,
    )
}

/// Conv backward from `grad` (the output's gradient) and the forward's im2col matrix:
/// `(dx if asked, dweight, dbias)`.
fn conv_backward(
    g: &Geometry,
    cols: &[f32],
    weight: &[f32],
    grad: &[f32],
    want_x: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let (rows, n, c_out) = (g.patch_len(), g.positions(), g.grid[0]);
    let grad = swap_leading(grad, g.batch, c_out, g.grid[1] * g.grid[2]); // [c_out, n]
    let mut dweight = vec![0.0; c_out * rows];
    matmul_long(
        &mut dweight,
        Mat::row_major(&grad, c_out, n),
        Mat::row_major(cols, rows, n).t(),
    );
    let dbias = grad.chunks(n).map(sum).collect();
    let dx = want_x.then(|| {
        let mut dcols = vec![0.0; rows * n];
        matmul(
            &mut dcols,
            false,
            Mat::row_major(weight, c_out, rows).t(),
            Mat::row_major(&grad, c_out, n),
        );
        col2im(&dcols, g)
    });
    (dx, dweight, dbias)
}

/// Transposed conv forward: each input pixel scatters `W[c, :, :, :] x[b, c, y, x]` onto its
/// window of the output, as `col2im(W^T x)`.
/// Returns the output and the input as `[c_in, batch * h * w]` (for the backward pass).
fn transposed_forward(
    g: &Geometry,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let (rows, n, c_in) = (g.patch_len(), g.positions(), g.grid[0]);
    let x = swap_leading(x, g.batch, c_in, g.grid[1] * g.grid[2]); // [c_in, n]
    let mut cols = vec![0.0; rows * n];
    matmul(
        &mut cols,
        false,
        Mat::row_major(weight, c_in, rows).t(),
        Mat::row_major(&x, c_in, n),
    );
    let mut out = col2im(&cols, g);
    let plane = g.image[1] * g.image[2];
    for_each_chunk(&mut out, plane, |i, p| {
        let b = bias[i % g.image[0]];
        p.iter_mut().for_each(|v| *v += b);
    });
    (out, x)
}

/// Transposed conv backward: the output's gradient, im2col'd, is the conv of the forward. `x`
/// is the forward's input as `[c_in, batch * h * w]`.
fn transposed_backward(
    g: &Geometry,
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
    want_x: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let (rows, n, c_in) = (g.patch_len(), g.positions(), g.grid[0]);
    let dcols = im2col(grad, g); // [rows, n]
    let mut dweight = vec![0.0; c_in * rows];
    matmul_long(
        &mut dweight,
        Mat::row_major(x, c_in, n),
        Mat::row_major(&dcols, rows, n).t(),
    );
    let channels = g.image[0];
    let plane = g.image[1] * g.image[2];
    let mut dbias = vec![0.0; channels];
    for (i, p) in grad.chunks(plane).enumerate() {
        dbias[i % channels] += sum(p);
    }
    let dx = want_x.then(|| {
        let mut dx = vec![0.0; c_in * n];
        matmul(
            &mut dx,
            false,
            Mat::row_major(weight, c_in, rows),
            Mat::row_major(&dcols, rows, n),
        );
        swap_leading(&dx, c_in, g.batch, g.grid[1] * g.grid[2])
    });
    (dx, dweight, dbias)
}

fn sum(values: &[f32]) -> f32 {
    values.iter().sum()
}

/// `image` `[batch, c, h, w]` -> `[c * k * k, batch * gh * gw]`: row `(c, i, j)`, column
/// `(b, y, x)` holds `image[b, c, y*s + i, x*s + j]`.
///
/// Each plane is first split into its stride phases ([`Phases`]), where the pixels a kernel row
/// reads lie side by side, so that every line of the matrix is one copy instead of a strided
/// gather (a stride-2 gather does not vectorise, and took most of im2col's time).
fn im2col(image: &[f32], g: &Geometry) -> Vec<f32> {
    let [channels, height, width] = g.image;
    let [_, gh, gw] = g.grid;
    let (k, n) = (g.k, g.positions());
    let phases = Phases::new(height, width, g.stride);
    let plane = height * width;
    let mut split = vec![0.0; g.batch * channels * phases.len()];
    for_each_chunk(&mut split, phases.len(), |index, out| {
        phases.split(&image[index * plane..][..plane], out);
    });
    let mut cols = vec![0.0; channels * k * k * n];
    for_each_chunk(&mut cols, n, |row, out| {
        let (c, i, j) = (row / (k * k), (row / k) % k, row % k);
        let (phase, di, dj) = phases.locate(i, j);
        for (b, out) in out.chunks_mut(gh * gw).enumerate() {
            let grid = phases.grid(&split[(b * channels + c) * phases.len()..], phase);
            for (y, out) in out.chunks_mut(gw).enumerate() {
                out.copy_from_slice(&grid[(y + di) * phases.width + dj..][..gw]);
            }
        }
    });
    cols
}

/// The adjoint of [`im2col`]: sums every column entry back onto the image pixel it came from,
/// into stride phases first ([`Phases`]: contiguous adds), then merged into the plane.
///
/// Tried and dropped: one GEMM per image, folded while its block of columns is still in cache
/// rather than after the whole batch's matrix went to memory and back. It halved this fold's
/// time, but the narrow GEMMs ran on gemm's edge kernels and a training step got slower.
fn col2im(cols: &[f32], g: &Geometry) -> Vec<f32> {
    let [channels, height, width] = g.image;
    let [_, gh, gw] = g.grid;
    let (k, n) = (g.k, g.positions());
    let phases = Phases::new(height, width, g.stride);
    let mut image = vec![0.0; g.batch * channels * height * width];
    let scratch = || vec![0.0; phases.len()];
    for_each_chunk_with(&mut image, height * width, scratch, |split, index, dst| {
        let (b, c) = (index / channels, index % channels);
        split.fill(0.0);
        for i in 0..k {
            for j in 0..k {
                let row = (c * k + i) * k + j;
                let src = &cols[row * n + b * gh * gw..][..gh * gw];
                let (phase, di, dj) = phases.locate(i, j);
                let grid = phases.grid_mut(split, phase);
                for (y, src) in src.chunks(gw).enumerate() {
                    let line = &mut grid[(y + di) * phases.width + dj..][..gw];
                    line.iter_mut().zip(src).for_each(|(d, v)| *d += v);
                }
            }
        }
        phases.merge(split, dst);
    });
    image
}

/// A `height x width` plane seen as its `s * s` stride phases: phase `(pi, pj)` is the grid of
/// pixels `(a*s + pi, d*s + pj)`, stored at `[a][d]` in a `height x width` grid of the phase
/// size (`ceil(height / s) x ceil(width / s)`; cells past the plane's edge stay unused).
///
/// Pixel `(y*s + i, x*s + j)` is cell `(y + i/s, x + j/s)` of phase `(i % s, j % s)`, so a
/// kernel offset reads or writes a whole line of a phase at once.
#[derive(Debug, Clone, Copy)]
struct Phases {
    plane_height: usize,
    plane_width: usize,
    stride: usize,
    height: usize,
    width: usize,
}

impl Phases {
    fn new(plane_height: usize, plane_width: usize, stride: usize) -> Self {
        Self {
            plane_height,
            plane_width,
            stride,
            height: plane_height.div_ceil(stride),
            width: plane_width.div_ceil(stride),
        }
    }

    /// Floats in all phases of one plane.
    fn len(&self) -> usize {
        self.stride * self.stride * self.height * self.width
    }

    /// Kernel offset `(i, j)` -> (its phase, row offset, column offset).
    fn locate(&self, i: usize, j: usize) -> (usize, usize, usize) {
        let s = self.stride;
        ((i % s) * s + j % s, i / s, j / s)
    }

    fn grid<'a>(&self, split: &'a [f32], phase: usize) -> &'a [f32] {
        let len = self.height * self.width;
        &split[phase * len..][..len]
    }

    fn grid_mut<'a>(&self, split: &'a mut [f32], phase: usize) -> &'a mut [f32] {
        let len = self.height * self.width;
        &mut split[phase * len..][..len]
    }

    /// Every line of the plane's pixels that one phase holds side by side, as (its cells in
    /// phase storage, the plane from that line's first pixel to its row's end, to be read every
    /// `stride`-th).
    fn lines(&self) -> impl Iterator<Item = (Range<usize>, Range<usize>)> + '_ {
        let s = self.stride;
        (0..self.plane_height).flat_map(move |r| {
            (0..s.min(self.plane_width)).map(move |pj| {
                let start = (((r % s) * s + pj) * self.height + r / s) * self.width;
                let row_end = (r + 1) * self.plane_width;
                (
                    start..start + self.width,
                    r * self.plane_width + pj..row_end,
                )
            })
        })
    }

    /// `plane` -> its phases.
    fn split(&self, plane: &[f32], split: &mut [f32]) {
        for (cells, pixels) in self.lines() {
            let pixels = plane[pixels].iter().step_by(self.stride);
            split[cells]
                .iter_mut()
                .zip(pixels)
                .for_each(|(c, &p)| *c = p);
        }
    }

    /// Phases -> `plane`: every pixel is written.
    fn merge(&self, split: &[f32], plane: &mut [f32]) {
        for (cells, pixels) in self.lines() {
            let pixels = plane[pixels].iter_mut().step_by(self.stride);
            pixels.zip(&split[cells]).for_each(|(p, &c)| *p = c);
        }
    }
}

/// `[a, b, p]` -> `[b, a, p]`.
fn swap_leading(src: &[f32], a: usize, b: usize, p: usize) -> Vec<f32> {
    let mut dst = vec![0.0; src.len()];
    for_each_chunk(&mut dst, p, |index, out| {
        let (j, i) = (index / a, index % a); // dst[j, i] = src[i, j]
        out.copy_from_slice(&src[(i * b + j) * p..][..p]);
    });
    dst
}

/// Buffers smaller than this are walked on the calling thread. A batch-1 decode (the dream's and
/// the app's every frame) stays under it, so it does not wait for a core that the app's renderer
/// is busy on (in the app under Xvfb, where the software renderer shares the two cores, that wait
/// put the decode's 95th percentile at 18-26 ms, against 1.1 ms for its median); batch-32
/// training is above it.
const PARALLEL_MIN_LEN: usize = 1 << 18;

/// `f(index, chunk)` for each `len`-long chunk of `data`, on rayon's threads when `data` is large.
fn for_each_chunk(data: &mut [f32], len: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    for_each_chunk_with(data, len, || (), |_, i, c| f(i, c));
}

/// [`for_each_chunk`] with a scratch value from `init`, made once per thread (not per chunk) and
/// handed to every `f` call on that thread.
fn for_each_chunk_with<S>(
    data: &mut [f32],
    len: usize,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [f32]) + Sync + Send,
) {
    if data.len() < PARALLEL_MIN_LEN {
        let mut scratch = init();
        data.chunks_mut(len)
            .enumerate()
            .for_each(|(i, c)| f(&mut scratch, i, c));
    } else {
        data.par_chunks_mut(len)
            .enumerate()
            .for_each_init(init, |scratch, (i, c)| f(scratch, i, c));
    }
}

/// A matrix view for `gemm`: a slice with row and column strides.
#[derive(Debug, Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
}

impl<'a> Mat<'a> {
    fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert!(
            data.len() >= rows * cols,
            "gemm_conv: matrix data too short"
        );
        Self {
            data,
            rows,
            cols,
            row_stride: cols as isize,
            col_stride: 1,
        }
    }

    /// Rows `row0..row0 + rows` and columns `col0..col0 + cols` of this matrix.
    fn block(self, row0: usize, rows: usize, col0: usize, cols: usize) -> Self {
        assert!(
            row0 + rows <= self.rows && col0 + cols <= self.cols,
            "gemm_conv: block out of bounds"
        );
        // Strides are non-negative here (`row_major` and `t` only), so the block starts inside.
        let start = row0 * self.row_stride as usize + col0 * self.col_stride as usize;
        Self {
            data: &self.data[start.min(self.data.len())..],
            rows,
            cols,
            ..self
        }
    }

    fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// A weight gradient's shared dimension (batch x pixels) from which [`matmul_long`] splits it.
const SPLIT_MIN_DEPTH: usize = 1024;

/// `dst = a b` for a weight gradient: a small output whose shared dimension (batch x pixels, up
/// to 30,752 for V's first conv at batch 32) is long. gemm shares threads out over the output,
/// and for these shapes it ran slower on two cores than with both threads pinned to one (1.5-1.6
/// ms against 0.85 for the first conv's). Here the shared dimension is cut in two halves,
/// multiplied side by side and summed (0.41 ms). Always two halves, whatever the thread count, so
/// that the rounding, and with it a trained model's bytes, does not depend on the machine.
fn matmul_long(dst: &mut [f32], a: Mat, b: Mat) {
    let k = a.cols;
    if k < SPLIT_MIN_DEPTH {
        return matmul(dst, false, a, b);
    }
    let half = k / 2;
    let mut upper = vec![0.0; dst.len()];
    let none = Some(gemm::Parallelism::None);
    rayon::join(
        || {
            matmul_with(
                dst,
                false,
                a.block(0, a.rows, 0, half),
                b.block(0, half, 0, b.cols),
                none,
            )
        },
        || {
            let (a, b) = (
                a.block(0, a.rows, half, k - half),
                b.block(half, k - half, 0, b.cols),
            );
            matmul_with(&mut upper, false, a, b, none)
        },
    );
    dst.iter_mut().zip(&upper).for_each(|(d, u)| *d += u);
}

/// `dst = a b`, or `dst += a b` with `accumulate`; `dst` is row-major `[a.rows, b.cols]`.
fn matmul(dst: &mut [f32], accumulate: bool, a: Mat, b: Mat) {
    matmul_with(dst, accumulate, a, b, None);
}

/// [`matmul`] on `parallelism`, or, if `None`, on threads when the product is large.
fn matmul_with(
    dst: &mut [f32],
    accumulate: bool,
    a: Mat,
    b: Mat,
    parallelism: Option<gemm::Parallelism>,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k && dst.len() == m * n,
        "gemm_conv: matmul shapes"
    );
    // Below about 192^3 multiply-adds threads cost more than they save (burn-flex's threshold).
    let parallelism = parallelism.unwrap_or(if m * n * k >= 192 * 192 * 192 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    });
    // SAFETY: the views were checked to lie inside their slices (`row_major` and `block`; `t`
    // only swaps strides), `dst` holds exactly m x n, and nothing else aliases it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride,
            a.row_stride,
            b.data.as_ptr(),
            b.col_stride,
            b.row_stride,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
