package plan

import (
	"fmt"
	"math"

	"github.com/torusml/torus/model"
)

// ActivationBytes is the size of one activation element.
func (c Config) ActivationBytes() int64 {
	switch c.Precision {
	case FP64:
		return 8
	case BF16Mixed:
		return 2
	}
	return 4
}

// NumParams counts the model's parameters.
func NumParams(m model.Config) int64 {
	var n int64
	for _, name := range m.ParamNames() {
		shape, err := m.ParamShape(name)
		if err != nil {
			continue
		}
		k := int64(1)
		for _, d := range shape {
			k *= int64(d)
		}
		n += k
	}
	return n
}

// layerParams is one decoder layer's parameter count.
func layerParams(m model.Config) int64 {
	d, hd := int64(m.Dim), int64(m.HeadDimension())
	q, kv := int64(m.Heads)*hd, int64(m.KVHeads)*hd
	n := 2*d + d*q + 2*d*kv + q*d + 3*d*int64(m.MLPDim)
	if m.QKVBias {
		n += q + 2*kv
	}
	if m.OBias {
		n += d
	}
	return n
}

// shape is the per-worker geometry of a step.
type shape struct {
	lw          float64 // tokens of this worker's shard
	d, f, v, dh float64 // model width, MLP width, vocabulary, head width
	aq, akv, h  float64 // q width (H*Dh), k/v width (KH*Dh), query heads
	la, lk      float64 // query rows and key rows of the attention this worker runs
	aqA, akvA   float64 // q and k/v widths there (Ulysses: heads/sp)
	hA          float64 // query heads there
	nq, bq, bk  float64 // query blocks, block lengths (clipped to the shard)
	p           float64 // query blocks running at once
	tile        float64 // tokens of an MLP tile (the whole shard unless TileTokens)
	chunk       float64 // tokens of a loss chunk: min(LossChunk, lw), lw when LossChunk is 0
	ring, uly   bool    // sp > 1 with the ring, or Ulysses
}

func geometry(c Config) shape {
	m := c.Model
	sp := max(c.SP, 1)
	s := shape{
		lw: float64(c.SeqLen) / float64(sp),
		d:  float64(m.Dim), f: float64(m.MLPDim), v: float64(m.Vocab), dh: float64(m.HeadDimension()),
		h: float64(m.Heads),
	}
	s.aq, s.akv = s.h*s.dh, float64(m.KVHeads)*s.dh
	s.ring = sp > 1 && c.Strategy != "ulysses"
	s.uly = sp > 1 && c.Strategy == "ulysses"
	s.la, s.lk, s.aqA, s.akvA, s.hA = s.lw, s.lw, s.aq, s.akv, s.h
	if s.uly { // all-to-all: the whole sequence, a group of the heads
		s.la, s.lk = float64(c.SeqLen), float64(c.SeqLen)
		// With fewer key/value heads than ranks, each rank holds the one its
		// query heads share (replicated on sp/kv_heads ranks).
		s.aqA, s.akvA, s.hA = s.aq/float64(sp), math.Max(s.akv/float64(sp), s.dh), s.h/float64(sp)
	}
	s.bq, s.bk = math.Min(float64(max(c.AttnBlockQ, 1)), s.la), math.Min(float64(max(c.AttnBlockK, 1)), s.lk)
	s.nq = math.Ceil(s.la / s.bq)
	s.p = math.Min(float64(max(c.Concurrency, 1)), s.nq)
	s.tile = s.lw
	if c.TileTokens > 0 {
		s.tile = math.Min(float64(c.TileTokens), s.lw)
	}
	s.chunk = s.lw
	if c.LossChunk > 0 {
		s.chunk = math.Min(float64(c.LossChunk), s.lw)
	}
	return s
}

// piece is a candidate for the largest transient: its name and its elements.
type piece struct {
	name  string
	elems float64
}

// transients are the candidates for the peak beyond stored activations, in
// elements of the activation dtype. Each counts what is alive while that piece
// runs in the backward of the last layer (or the head, before it).
//
// On the CPU the attention backward's peak also holds, in the Go backend's
// buffer pool, the MLP backward's intermediates released just before (a pooled
// buffer lives until two collections pass): all of them when the attention
// backward allocates little next to what is live (fixed: the bytes live
// besides the transient), fewer as its own allocations bring collections.
func transients(c Config, s shape, fixed, falloff float64) []piece {
	// Alive through a layer's backward: dh from above, the recomputed q, k, v
	// (and o, lse unless stored), the RoPE tables, and the layer's fresh
	// weight gradients from the VJP pieces.
	ctx := s.lw*s.d + s.lw*(s.aq+2*s.akv) + 2*s.lw*s.dh + float64(layerParams(c.Model))
	if c.Recompute == "layer" {
		ctx += s.lw * (s.aq + s.h)
	}
	post := s.lw * (s.d + s.aq) // PostAttnVJP's dh and do

	// Attention backward (model.BlockAttention.BeginBackward and Grad): copies
	// of do and q per query block, dq, lse and delta slices, k and v cut into
	// key blocks, the summed dk, dv (each query block's share is added into the
	// key block's rows as it is computed: no partial per query block, since
	// issue 18), and for each block pair running at once its score-sized
	// buffers and its products dq, dk, dv.
	attn := post + 3*s.la*s.aqA + 2*s.la*s.hA + 4*s.lk*s.akvA
	scratch := s.p * (scoreBuffers*s.hA*s.bq*s.bk + s.bq*s.aqA + 2*s.bk*s.akvA)
	attn += scratch
	// Go-heap tensors the attention backward makes (see transients' doc).
	allocated := 3*s.la*s.aqA + 4*s.lk*s.akvA
	if s.ring { // the visiting k, v and the one in flight; dK, dV sums coming and going
		attn += 6 * s.lw * s.akv
		allocated += 6 * float64(max(c.SP, 1)-1) * s.lw * s.akv // received at every ring step
	}
	if s.uly { // q, k, v, o, do gathered over the sequence for this worker's heads
		attn += s.la * (2*s.aqA + 2*s.akvA)
		allocated += 2 * s.la * (3*s.aqA + 2*s.akvA) // cut to send, and received
	}
	mlpInside := mlpWideBufs*s.tile*s.f + mlpNarrowBufs*s.tile*s.d
	mlp := post + mlpInside
	// The head (trainer.Engine.headBackward): with loss chunks, the final
	// hidden states and the dh being laid out whole, and one chunk's VJP.
	head := headVocabBufs*s.chunk*s.v + headDimBufs*s.chunk*s.d + s.v*s.d
	if s.chunk < s.lw {
		head += 2 * s.lw * s.d
	}
	if c.Device == CPU {
		b := float64(c.ActivationBytes())
		live := fixed + (ctx+attn)*b
		attn += mlpInside * max(0, 1-falloff*allocated*b/live)
	}

	blocks := fmt.Sprintf("%d query blocks", int(s.nq))
	if s.nq == 1 {
		blocks = "1 query block"
	}
	headName := fmt.Sprintf("head: logits and their gradient ([%d, %d])", int(s.chunk), c.Model.Vocab)
	if s.chunk < s.lw {
		headName = fmt.Sprintf("head: logits and their gradient ([%d, %d], one of %d loss chunks)", int(s.chunk), c.Model.Vocab, int(math.Ceil(s.lw/s.chunk)))
	}
	return []piece{
		{fmt.Sprintf("attention backward (%s of %d)", blocks, int(s.bq)), ctx + attn},
		{fmt.Sprintf("MLP backward ([%d, %d] intermediates)", int(s.tile), c.Model.MLPDim), ctx + mlp},
		{headName, head},
	}
}

// Plan predicts one worker's peak memory and step time with the Measured
// calibration. c must Validate.
func Plan(c Config) Report { return PlanWith(c, Measured) }

// PlanWith is Plan with another calibration (bench/plan fits one).
func PlanWith(c Config, k Calibration) Report {
	m := c.Model
	b := c.ActivationBytes()
	n := NumParams(m)
	w := int64(max(c.Workers(), 1))
	s := geometry(c)
	r := Report{Config: c, Params: n, Techniques: c.Techniques()}

	// Parameters, gradients, AdamW moments. torus: all in the parameter dtype,
	// replicated on every worker.
	switch c.Precision {
	case BF16Mixed:
		r.Weights = 2 * n
		r.Grads = 2 * n
		opt := 12 * n // float32 master weights, first and second moments
		if c.ShardOptimizer && w > 1 {
			r.Grads = 2*n/w + 2*layerParams(m) // a shard, and the bucket being reduced
			opt /= w
		}
		if c.OptimizerOnHost {
			r.Host += opt
		} else {
			r.Optimizer = opt
		}
	default:
		r.Weights, r.Grads, r.Optimizer = b*n, b*n, 2*b*n
	}

	// Stored activations: each layer's input h [Lw, D], and with
	// except_attention its attention output o [Lw, H*Dh] and lse [Lw, KH, G].
	perLayer := s.lw * s.d
	if c.Recompute == "except_attention" {
		perLayer += s.lw * (s.aq + s.h)
	}
	r.StoredPerLayer = int64(perLayer) * b
	all := int64(m.Layers) * r.StoredPerLayer
	resident := all
	switch {
	case c.Offload == "disk":
		// trainer.DiskStore: the last layer stays, the others are written as
		// soon as they are stored and read back one ahead in backward.
		resident = int64(min(m.Layers, 2)) * r.StoredPerLayer
		r.SpillBytes = 2 * int64(m.Layers-1) * r.StoredPerLayer * int64(c.GradAccum)
	case c.Offload == "host" && c.Device == GPU:
		// To host memory as each layer is done, back one ahead in backward.
		resident = int64(min(m.Layers, 2)) * r.StoredPerLayer
		r.Host += all
	}
	r.Stored = resident

	best := piece{}
	fixed := float64(r.Weights + r.Grads + r.Optimizer + r.Stored + k.BaselineLiveBytes + c.DataBytes)
	for _, p := range transients(c, s, fixed, k.PoolFalloff) {
		if p.elems > best.elems {
			best = p
		}
	}
	r.Transient, r.TransientPiece = int64(best.elems)*b, best.name

	live := r.Weights + r.Grads + r.Optimizer + r.Stored + r.Transient
	weightsNote := fmt.Sprintf("%s parameters x %d B", Count(n), b)
	optNote := fmt.Sprintf("AdamW moments, 2 x %d B per parameter, replicated", b)
	gradNote := "replicated on every worker"
	if c.Precision == BF16Mixed {
		weightsNote = fmt.Sprintf("%s parameters x 2 B (bf16)", Count(n))
		optNote = "float32 master weights and moments, 12 B per parameter"
		if c.ShardOptimizer && w > 1 {
			optNote += fmt.Sprintf(", sharded over %d", w)
			gradNote = fmt.Sprintf("bf16, sharded over %d, plus one layer being reduced", w)
		} else {
			gradNote = "bf16"
		}
		if c.OptimizerOnHost {
			optNote = fmt.Sprintf("in host memory (%s there)", Bytes(r.Host-hostActivations(r, all)))
		}
	}
	storedNote := fmt.Sprintf("%d layers x %s", m.Layers, Bytes(r.StoredPerLayer))
	if resident != all {
		storedNote = fmt.Sprintf("%d of %d layers resident (offload %s)", min(m.Layers, 2), m.Layers, c.Offload)
	}
	r.Components = []Component{
		{"weights", r.Weights, weightsNote},
		{"gradients", r.Grads, gradNote},
		{"optimizer state", r.Optimizer, optNote},
		{"stored activations", r.Stored, storedNote},
		{"largest transient", r.Transient, best.name},
	}
	if c.Device == CPU {
		// What is live, and how far the Go heap grows past it: to GCFactor x
		// what lives long (weights, optimizer, stored activations, data,
		// runtime), and to TransientReach of that bound for the transient.
		if c.DataBytes > 0 {
			r.Components = append(r.Components, Component{"data loader", c.DataBytes, "documents read by its lanes, as int32 tokens"})
			live += c.DataBytes
		}
		live += k.BaselineLiveBytes
		long := float64(live - r.Transient)
		heap := c.GCFactor * (long + k.TransientReach*float64(r.Transient))
		high := max(heap, k.HighReach*c.GCFactor*float64(live))
		note := fmt.Sprintf("the Go heap grows to about %.3gx what is live (GOGC)", c.GCFactor)
		if capped := float64(c.MemoryLimit - k.NonHeapBytes); c.MemoryLimit > 0 && high > capped {
			high = max(float64(live), capped)
			if heap > capped {
				heap = high
				note = fmt.Sprintf("held near the memory limit (%s) by the collector", Bytes(c.MemoryLimit))
			}
		}
		r.Baseline = k.NonHeapBytes + k.BaselineLiveBytes
		r.GCHeadroom = int64(heap) - live
		r.Live = live
		r.TotalHigh = k.NonHeapBytes + int64(high)
		r.Components = append(r.Components,
			Component{"runtime baseline", r.Baseline, "Go runtime, compiled pieces (measured)"},
			Component{"GC headroom", r.GCHeadroom, note})
	} else {
		r.Baseline = k.GPUContextBytes
		r.Components = append(r.Components, Component{"runtime baseline", r.Baseline, "CUDA context and workspaces (assumed)"})
	}
	for _, comp := range r.Components {
		r.Total += comp.Bytes
	}
	if c.Device == GPU {
		r.TotalHigh = r.Total
	}
	r.FLOPs, r.AttnFLOPs = stepFLOPs(c)
	r.RateGFLOPS = rate(c)
	eff, attnEff := k.Efficiency, k.AttnEfficiency
	switch {
	case c.Efficiency > 0:
		eff, attnEff = c.Efficiency, c.Efficiency
	case c.Device == GPU:
		eff, attnEff = k.GPUEfficiency, k.GPUEfficiency
	}
	if r.RateGFLOPS > 0 && eff > 0 && attnEff > 0 {
		r.StepSeconds = ((r.FLOPs-r.AttnFLOPs)/eff + r.AttnFLOPs/attnEff) / (r.RateGFLOPS * 1e9)
		r.Efficiency = r.FLOPs / (r.RateGFLOPS * 1e9 * r.StepSeconds)
	}
	return r
}

// hostActivations is the part of r.Host that is offloaded activations.
func hostActivations(r Report, all int64) int64 {
	if r.Config.Offload == "host" && r.Config.Device == GPU {
		return all
	}
	return 0
}

// rate is the matmul rate one worker gets: the machine's shared by the
// workers on it (CPU), or one device's (GPU).
func rate(c Config) float64 {
	if c.Device == CPU {
		return c.MatmulGFLOPS / float64(max(c.WorkersPerMachine, 1))
	}
	return c.MatmulGFLOPS
}
