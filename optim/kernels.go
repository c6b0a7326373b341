package optim

import (
	"fmt"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
)

// Kernels are the optimizer's element-wise graphs compiled for one backend: the
// AdamW update (DeviceAdamW), the global norm, scaling and accumulation of
// gradients. Each graph is compiled once per input shape and dtype and cached, so
// parameters of the same shape share one executable; every step-dependent number
// (learning rate, bias corrections, scale) is an input, not a constant, so one
// compilation serves every step. On a GPU the tensors they take and return stay on
// the device: of all this, only the global norm (8 bytes) comes to the host.
//
// Arithmetic matches the host functions of this package: elements are converted to
// float64, combined in the same order, and rounded once to their dtype, so the
// AdamW update, Scale and Accumulate give bitwise the results of AdamW.Step, Scale
// and an element-wise dst[i] += src[i] (tested on the Go backend and on XLA with
// an H200, float32 and float64). GlobalNorm alone differs: a reduction sums in its
// own order (relative difference ~1e-15, tested at 1e-12). The host side is Go
// compiled for amd64, which never fuses x*y+z; on arm64 the Go compiler may emit
// FMAs in AdamW.Step and the two could differ in the last bit.
//
// Donation: a tensor documented as donated is consumed by the call. Its device
// buffer is handed to the executable, which may write the result into it (an update
// in place on a GPU), and the old *tensors.Tensor must not be used afterwards: on
// a backend without a host copy of it (the Go backend, a GPU) it is finalized. Use
// the tensor the call returns instead.
//
// Kernels is safe for concurrent use on distinct tensors (graph.Exec compiles and
// runs concurrently); a host tensor given to two concurrent calls races on its
// first transfer to the device.
type Kernels struct {
	backend compute.Backend

	adamw *graph.Exec // hyper [numHyper] f64, p [S], g [S], m [n], v [n] -> p, m, v
	zeros *graph.Exec // p [S] -> m, v [n] zeros of p's dtype
	norm  *graph.Exec // g_1, ..., g_k -> sqrt(sum of squares) f64 []
	scale *graph.Exec // f f64 [], x [S] -> x*f [S]
	add   *graph.Exec // a [S], b [S] -> a+b [S]
}

// maxShapes bounds each executable's cache: a decoder has a few dozen distinct
// parameter shapes; more means something feeds shapes that vary by step.
const maxShapes = 256

// NewKernels makes the kernels for backend (compiled lazily, on first use of a shape).
func NewKernels(backend compute.Backend) (*Kernels, error) {
	k := &Kernels{backend: backend}
	var err error
	mk := func(name string, max int, fn func([]*graph.Node) []*graph.Node) *graph.Exec {
		if err != nil {
			return nil
		}
		var e *graph.Exec
		e, err = graph.NewExec(backend, fn)
		if err != nil {
			err = fmt.Errorf("optim: kernel %s: %w", name, err)
			return nil
		}
		return e.WithName(name).SetMaxCache(max)
	}
	k.adamw = mk("AdamW", maxShapes, adamwGraph)
	k.zeros = mk("Zeros", maxShapes, func(in []*graph.Node) []*graph.Node {
		flat := graph.Reshape(in[0], in[0].Shape().Size())
		return []*graph.Node{graph.ZerosLike(flat), graph.ZerosLike(flat)}
	})
	// One graph for all the gradients together: one launch, one scalar back.
	k.norm = mk("GlobalNorm", 16, func(in []*graph.Node) []*graph.Node {
		var s *graph.Node
		for _, x := range in {
			x = graph.ConvertDType(x, dtypes.Float64)
			if sq := graph.ReduceAllSum(graph.Mul(x, x)); s == nil {
				s = sq
			} else {
				s = graph.Add(s, sq) // tensor by tensor, in order, as GlobalNorm
			}
		}
		return []*graph.Node{graph.Sqrt(s)}
	})
	// As Scale: float64 product, rounded once to x's dtype.
	k.scale = mk("Scale", maxShapes, func(in []*graph.Node) []*graph.Node {
		return []*graph.Node{graph.ConvertDType(graph.Mul(graph.ConvertDType(in[1], dtypes.Float64), in[0]), in[1].DType())}
	})
	// As host.AddInto: in the tensors' own dtype.
	k.add = mk("Accumulate", maxShapes, func(in []*graph.Node) []*graph.Node { return []*graph.Node{graph.Add(in[0], in[1])} })
	if err != nil {
		return nil, err
	}
	return k, nil
}

// Backend is the backend the kernels run on.
func (k *Kernels) Backend() compute.Backend { return k.backend }

// hyperparameter positions in adamw's first input.
const (
	hLR = iota
	hWD
	hB1
	hOneMinusB1
	hB2
	hOneMinusB2
	hEps
	hBC1
	hBC2
	hOne // 1, see adamwGraph
	numHyper
)

// adamwGraph is update (adamw.go) as a graph, operation for operation: the same
// float64 products, sums and quotients in the same order, the moments rounded to
// the storage dtype only when stored, the parameter updated from the unrounded
// float64 moments.
//
// in: hyper [numHyper] f64, p [S], g [S], m [n], v [n] (p, g, m, v of one dtype)
// out: p [S], m [n], v [n]
func adamwGraph(in []*graph.Node) []*graph.Node {
	h, p, g, m, v := in[0], in[1], in[2], in[3], in[4]
	at := func(i int) *graph.Node { return graph.Reshape(graph.Slice(h, graph.AxisElem(i))) }
	lr, wd := at(hLR), at(hWD)
	b1, c1, b2, c2 := at(hB1), at(hOneMinusB1), at(hB2), at(hOneMinusB2)
	eps, bc1, bc2, one := at(hEps), at(hBC1), at(hBC2), at(hOne)

	dtype, n := p.DType(), p.Shape().Size()
	f64 := func(x *graph.Node) *graph.Node { return graph.ConvertDType(graph.Reshape(x, n), dtypes.Float64) }
	gi, pi := f64(g), f64(p)
	mi := graph.Add(graph.Mul(b1, f64(m)), graph.Mul(c1, gi))                // b1*m + (1-b1)*g
	vi := graph.Add(graph.Mul(b2, f64(v)), graph.Mul(graph.Mul(c2, gi), gi)) // b2*v + (1-b2)*g*g, left to right
	// XLA's algebraic simplifier rewrites (a/b)/c as a/(b*c), which rounds
	// differently (on the GPU 7-9% of float64 parameters differed in the last bit).
	// Times one, an input it cannot fold, the quotient is kept and nothing changes:
	// x*1 == x exactly.
	mhat := graph.Mul(graph.Div(mi, bc1), one)
	step := graph.Div(mhat, graph.Add(graph.Sqrt(graph.Div(vi, bc2)), eps))
	pi = graph.Sub(pi, graph.Mul(lr, graph.Add(graph.Mul(wd, pi), step)))
	return []*graph.Node{
		graph.Reshape(graph.ConvertDType(pi, dtype), p.Shape().Dimensions...),
		graph.ConvertDType(mi, dtype),
		graph.ConvertDType(vi, dtype),
	}
}

func (k *Kernels) run(e *graph.Exec, want int, args ...any) ([]*tensors.Tensor, error) {
	out, err := e.Exec(args...)
	if err != nil {
		return nil, fmt.Errorf("optim: %s: %w", e.Name(), err)
	}
	if len(out) != want {
		return nil, fmt.Errorf("optim: %s: %d outputs, want %d", e.Name(), len(out), want)
	}
	return out, nil
}

// donate marks t's device buffer as given to the next execution (see Kernels).
func (k *Kernels) donate(t *tensors.Tensor) (any, error) {
	d, err := graph.DonateTensorBuffer(t, k.backend, 0)
	if err != nil {
		return nil, fmt.Errorf("optim: donate %s: %w", t.Shape(), err)
	}
	return d, nil
}

// float checks that t is a float32 or float64 tensor.
func float(what string, t *tensors.Tensor) error {
	if t == nil {
		return fmt.Errorf("optim: %s: nil tensor", what)
	}
	if dt := t.DType(); dt != dtypes.Float32 && dt != dtypes.Float64 {
		return fmt.Errorf("optim: %s: dtype %s, want float32 or float64", what, dt)
	}
	return nil
}

// sameShape checks that a and b have one shape and dtype.
func sameShape(what string, a, b *tensors.Tensor) error {
	if err := float(what, a); err != nil {
		return err
	}
	if err := float(what, b); err != nil {
		return err
	}
	if !a.Shape().Equal(b.Shape()) {
		return fmt.Errorf("optim: %s: %s and %s", what, a.Shape(), b.Shape())
	}
	return nil
}

// GlobalNorm is the L2 norm of all the tensors together, as GlobalNorm: squares
// summed in float64, tensor by tensor. Within a tensor the sum runs in the
// backend's order, not index order, so it may differ from GlobalNorm's in the last
// bits (relative 1e-12 is tested). Reading the norm is a host-device sync point.
func (k *Kernels) GlobalNorm(ts ...*tensors.Tensor) (float64, error) {
	if len(ts) == 0 {
		return 0, nil
	}
	args := make([]any, len(ts))
	for i, t := range ts {
		if err := float("global norm", t); err != nil {
			return 0, err
		}
		args[i] = t
	}
	out, err := k.run(k.norm, 1, args...)
	if err != nil {
		return 0, err
	}
	defer out[0].FinalizeAll()
	return tensors.ToScalar[float64](out[0]), nil
}

// ClipGlobalNorm scales the tensors so their global norm is at most maxNorm (no-op
// when maxNorm <= 0), as ClipGlobalNorm: by maxNorm/(norm+1e-6) when norm >
// maxNorm. Scaled tensors are donated and replaced in ts. It returns the norm before
// clipping.
func (k *Kernels) ClipGlobalNorm(maxNorm float64, ts []*tensors.Tensor) (float64, error) {
	norm, err := k.GlobalNorm(ts...)
	if err != nil {
		return 0, err
	}
	if maxNorm > 0 && norm > maxNorm {
		if err := k.Scale(maxNorm/(norm+1e-6), ts); err != nil {
			return norm, err
		}
	}
	return norm, nil
}

// Scale multiplies every element by f, as Scale: the product in float64, rounded
// once to the tensor's dtype. Each tensor is donated and replaced in ts by its
// scaled value.
func (k *Kernels) Scale(f float64, ts []*tensors.Tensor) error {
	for _, t := range ts {
		if err := float("scale", t); err != nil {
			return err
		}
	}
	ft := tensors.FromScalar(f) // moved to the device once, shared by every tensor
	defer ft.FinalizeAll()
	for i, t := range ts {
		d, err := k.donate(t)
		if err != nil {
			return err
		}
		out, err := k.run(k.scale, 1, ft, d)
		if err != nil {
			return err
		}
		ts[i] = out[0]
	}
	return nil
}

// Accumulate returns dst+src (same shape and dtype), added in their dtype as
// host.AddInto does. dst is donated: on a device the sum is written into its
// buffer and stays there; src is only read.
func (k *Kernels) Accumulate(dst, src *tensors.Tensor) (*tensors.Tensor, error) {
	if err := sameShape("accumulate", dst, src); err != nil {
		return nil, err
	}
	if dst.DType() != src.DType() {
		return nil, fmt.Errorf("optim: accumulate: %s into %s", src.DType(), dst.DType())
	}
	d, err := k.donate(dst)
	if err != nil {
		return nil, err
	}
	out, err := k.run(k.add, 1, d, src)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}
