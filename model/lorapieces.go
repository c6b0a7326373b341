package model

import (
	"fmt"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/host"
)

// LoRAPieces are the pieces a model with adapters trains through. The forward
// pieces of Pieces run unchanged on merged weights W + s B A (Layer merges a
// layer's targeted projections: rank x in x out multiply-adds each, nothing
// beside a step's token-sized work); the VJPs here pull the gradient back to
// h, the adapters and the norms when they train, and never form a gradient of
// a frozen weight. With y = x W'^T and W' = W + s B A:
//
//	dx = dy W'          dA = s (dy B)^T x          dB = s dy^T (x A^T)
//
// so an adapter's gradient costs L x rank x (in + out), not L x in x out.
// The attention biases (Config.QKVBias, OBias) stay frozen, as PEFT's bias
// "none" keeps them: they enter the forward and no gradient is formed.
type LoRAPieces struct {
	cfg                    Config
	l                      LoRA
	merge, widen           *Exec
	preVJP, postVJP, headV *Exec
	preT, postT            []string // the targeted suffixes of each piece, in input order
}

// NewLoRAPieces builds the pieces for a model configuration and its adapters.
func NewLoRAPieces(backend compute.Backend, cfg Config, l LoRA) (*LoRAPieces, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	c, s := cfg, l.Scale()
	lp := &LoRAPieces{
		cfg:   cfg,
		l:     l,
		preT:  l.targetedSuffixes(QProj, KProj, VProj),
		postT: l.targetedSuffixes(OProj, GateProj, UpProj, DownProj),
	}
	var err error
	mk := func(name string, fn func([]*Node) []*Node) *Exec {
		if err != nil {
			return nil
		}
		var e *Exec
		if e, err = NewExec(backend, fn); err != nil {
			err = fmt.Errorf("model: piece %s: %w", name, err)
			return nil
		}
		return e.WithName(name).SetMaxCache(64)
	}
	// in: w [out, in], a [r, in], b [out, r] -> w + s b a, in the adapters'
	// dtype, the master weights' (float32 under mixed precision: the merge is
	// not rounded to the compute dtype, the pieces cast the merged weight as
	// they cast any; a frozen w kept in bfloat16 widens exactly).
	lp.merge = mk("LoRAMerge", func(in []*Node) []*Node {
		dt := in[1].DType()
		ba := DotGeneral(in[2], []int{1}, nil, in[1], []int{0}, nil)
		return []*Node{Add(as(in[0], dt), as(MulScalar(ba, s), dt))}
	})
	// in: x, like (a scalar) -> x in like's dtype: a frozen weight kept in
	// half precision, widened to the master dtype for the piece about to use it.
	lp.widen = mk("Widen", func(in []*Node) []*Node { return []*Node{as(in[0], in[1].DType())} })
	// in: h, normW, wq, wk, wv, cos, sin, dq, dk, dv, then (a, b) per targeted
	// projection -> dh, [dnormW], (da, db) per targeted projection. The q, k, v
	// biases add after the projections: the pullback does not read them.
	lp.preVJP = mk("PreAttnVJPLoRA", func(in []*Node) []*Node {
		return preAttnBwdLoRA(c, l.TrainNorm, s, lp.preT, in)
	})
	// in: h, o, wo, normW, wg, wu, wd, dhNext, [bo], then (a, b) per targeted
	// projection -> dh, do, [dnormW], (da, db) per targeted projection.
	lp.postVJP = mk("PostAttnVJPLoRA", func(in []*Node) []*Node {
		return postAttnBwdLoRA(c, l.TrainNorm, s, lp.postT, in)
	})
	// in: h, normW, wout, targets, weight, scale -> loss, dh, [dnormW], [dwout]
	lp.headV = mk("HeadVJPLoRA", func(in []*Node) []*Node {
		loss := headLoss(c, in[0], in[1], in[2], in[3], in[4], in[5])
		wrt := []*Node{in[0]}
		if l.TrainNorm {
			wrt = append(wrt, in[1])
		}
		if lp.headOutTrains(c) {
			wrt = append(wrt, in[2])
		}
		return append([]*Node{loss}, Gradient(loss, wrt...)...)
	})
	if err != nil {
		return nil, err
	}
	return lp, nil
}

// headOutTrains: the output projection trains when it is the (trained) embedding.
func (lp *LoRAPieces) headOutTrains(c Config) bool { return lp.l.TrainEmbed && c.TieEmbeddings }

// Layer returns layer i's weights as the pieces take them: the adapters merged
// into the targeted projections, and every weight kept in half precision
// widened to p.DType (fresh tensors, the layer's alone: one layer's worth at a
// time beside the half-precision base; the others are p's own).
func (lp *LoRAPieces) Layer(p *Params, i int) (LayerWeights, error) {
	w := p.Layer(i)
	for _, slot := range []struct {
		suffix string
		t      **tensors.Tensor
	}{{QProj, &w.Q}, {KProj, &w.K}, {VProj, &w.V}, {OProj, &w.O}, {GateProj, &w.Gate}, {UpProj, &w.Up}, {DownProj, &w.Down},
		{InputNorm, &w.InputNorm}, {PostNorm, &w.PostNorm}, {"", &w.QBias}, {"", &w.KBias}, {"", &w.VBias}, {"", &w.OBias}} {
		var err error
		switch {
		case *slot.t == nil:
		case slot.suffix != "" && lp.l.Targeted(slot.suffix):
			var out []*tensors.Tensor
			if out, err = run(lp.merge, 1, *slot.t, p.Get(LoRAName(i, slot.suffix, "A")), p.Get(LoRAName(i, slot.suffix, "B"))); err == nil {
				*slot.t = out[0]
			}
		default:
			*slot.t, err = lp.AsDType(*slot.t, p.DType)
		}
		if err != nil {
			return LayerWeights{}, err
		}
	}
	return w, nil
}

// AsDType is t in dtype dt, converted where t is (t itself when it is in dt).
func (lp *LoRAPieces) AsDType(t *tensors.Tensor, dt dtypes.DType) (*tensors.Tensor, error) {
	if t.DType() == dt {
		return t, nil
	}
	out, err := run(lp.widen, 1, t, host.NewScalar(dt, 0))
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// adapterArgs appends layer i's (A, B) of each targeted suffix to args.
func adapterArgs(p *Params, i int, suffixes []string, args []any) []any {
	for _, s := range suffixes {
		args = append(args, p.Get(LoRAName(i, s, "A")), p.Get(LoRAName(i, s, "B")))
	}
	return args
}

// collect names the gradients outs[k:] returns: the norm's when it trains, then
// (dA, dB) per targeted suffix.
func (lp *LoRAPieces) collect(i int, norm string, suffixes []string, outs []*tensors.Tensor) map[string]*tensors.Tensor {
	g := map[string]*tensors.Tensor{}
	if lp.l.TrainNorm {
		g[LayerParam(i, norm)], outs = outs[0], outs[1:]
	}
	for j, s := range suffixes {
		g[LoRAName(i, s, "A")], g[LoRAName(i, s, "B")] = outs[2*j], outs[2*j+1]
	}
	return g
}

func (lp *LoRAPieces) gradCount(suffixes []string) int {
	n := 2 * len(suffixes)
	if lp.l.TrainNorm {
		n++
	}
	return n
}

// PreAttnVJP pulls (dq, dk, dv) back through layer i's PreAttn (w: merged
// weights) to h and to what trains there, by parameter name.
func (lp *LoRAPieces) PreAttnVJP(p *Params, i int, w LayerWeights, h, cos, sin, dq, dk, dv *tensors.Tensor) (dh *tensors.Tensor, grads map[string]*tensors.Tensor, err error) {
	args := adapterArgs(p, i, lp.preT, []any{h, w.InputNorm, w.Q, w.K, w.V, cos, sin, dq, dk, dv})
	out, err := run(lp.preVJP, 1+lp.gradCount(lp.preT), args...)
	if err != nil {
		return nil, nil, err
	}
	return out[0], lp.collect(i, InputNorm, lp.preT, out[1:]), nil
}

// PostAttnVJP pulls dhNext back through layer i's PostAttn (w: merged weights)
// to h, o and what trains there, by parameter name.
func (lp *LoRAPieces) PostAttnVJP(p *Params, i int, w LayerWeights, h, o, dhNext *tensors.Tensor) (dh, do *tensors.Tensor, grads map[string]*tensors.Tensor, err error) {
	args := []any{h, o, w.O, w.PostNorm, w.Gate, w.Up, w.Down, dhNext}
	if lp.cfg.OBias {
		if w.OBias == nil {
			return nil, nil, nil, fmt.Errorf("model: PostAttnVJPLoRA: the config has an o_proj bias and the layer's weights lack it")
		}
		args = append(args, w.OBias)
	}
	args = adapterArgs(p, i, lp.postT, args)
	out, err := run(lp.postVJP, 2+lp.gradCount(lp.postT), args...)
	if err != nil {
		return nil, nil, nil, err
	}
	return out[0], out[1], lp.collect(i, PostNorm, lp.postT, out[2:]), nil
}

// HeadVJP: the scaled loss, dh, and the gradients of what trains in the head
// (the final norm with TrainNorm; the output weight when it is the trained
// embedding), by parameter name.
func (lp *LoRAPieces) HeadVJP(p *Params, h, targets, weight, scale *tensors.Tensor) (loss, dh *tensors.Tensor, grads map[string]*tensors.Tensor, err error) {
	want := 2
	if lp.l.TrainNorm {
		want++
	}
	if lp.headOutTrains(p.Config) {
		want++
	}
	out, err := run(lp.headV, want, h, p.Get("model.norm.weight"), p.OutputWeight(), targets, weight, scale)
	if err != nil {
		return nil, nil, nil, err
	}
	grads = map[string]*tensors.Tensor{}
	rest := out[2:]
	if lp.l.TrainNorm {
		grads["model.norm.weight"], rest = rest[0], rest[1:]
	}
	if lp.headOutTrains(p.Config) {
		grads["model.embed_tokens.weight"] = rest[0]
	}
	return out[0], out[1], grads, nil
}

// loraGrads: x [L, in] (and xT [in, L]), dy [L, out], a [r, in], b [out, r] ->
// dA = s (dy b)^T x [r, in], dB = s dy^T (x a^T) [out, r]. Under mixed
// precision the products run in the compute dtype, as the plain VJPs' do, and
// u, z and the gradients are in the adapters' (float32) dtype.
func loraGrads(c Config, x, xT, dy, a, b *Node, s float64) []*Node {
	u := inputGrad(c, dy, b) // [L, r]
	z := linear(c, x, a)     // [L, r]
	return []*Node{MulScalar(weightGrad(c, xT, u, a.DType()), s), MulScalar(weightGrad(c, transpose2(z), dy, b.DType()), s)}
}

// preAttnBwdLoRA: see LoRAPieces.preVJP.
func preAttnBwdLoRA(c Config, trainNorm bool, s float64, targets []string, in []*Node) []*Node {
	h, normW, wq, wk, wv, cos, sin, dq, dk, dv := in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7], in[8], in[9]
	L, dt := h.Shape().Dimensions[0], h.DType() // dt: the weights' dtype; dq, dk, dv come in the compute dtype
	n, r := rmsNormParts(h, c.NormEps)
	x := Mul(n, ExpandAxes(normW, 0))
	dy := map[string]*Node{
		QProj: Reshape(ropeBwd(as(dq, dt), cos, sin), L, -1),
		KProj: Reshape(ropeBwd(as(dk, dt), cos, sin), L, -1),
		VProj: Reshape(as(dv, dt), L, -1),
	}
	dx := Add(Add(inputGrad(c, dy[QProj], wq), inputGrad(c, dy[KProj], wk)), inputGrad(c, dy[VProj], wv))
	outs := normBwd(trainNorm, dx, n, r, normW)
	if len(targets) > 0 {
		xT := transpose2(x)
		for j, t := range targets {
			outs = append(outs, loraGrads(c, x, xT, dy[t], in[10+2*j], in[11+2*j], s)...)
		}
	}
	return outs
}

// postAttnBwdLoRA: see LoRAPieces.postVJP.
func postAttnBwdLoRA(c Config, trainNorm bool, s float64, targets []string, in []*Node) []*Node {
	h, o, wo, normW, wg, wu, wd, dy := in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7]
	bo, adapters := optional(c.OBias, in, 8), in[8:]
	if c.OBias {
		adapters = in[9:]
	}
	f := postAttnParts(c, h, o, wo, bo, normW, wg, wu)
	dh2, dnorm, dg, du := swiGLUBwd(c, f, trainNorm, normW, wg, wu, wd, dy)
	outs := []*Node{dh2, inputGrad(c, dh2, wo)}
	if trainNorm {
		outs = append(outs, dnorm)
	}
	var xT *Node
	for j, t := range targets {
		a, b := adapters[2*j], adapters[2*j+1]
		switch t {
		case OProj:
			outs = append(outs, loraGrads(c, o, transpose2(o), dh2, a, b, s)...)
		case GateProj, UpProj:
			if xT == nil {
				xT = transpose2(f.x)
			}
			d := dg
			if t == UpProj {
				d = du
			}
			outs = append(outs, loraGrads(c, f.x, xT, d, a, b, s)...)
		case DownProj:
			outs = append(outs, loraGrads(c, f.m, transpose2(f.m), dy, a, b, s)...)
		}
	}
	return outs
}
