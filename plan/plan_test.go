package plan

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/torusml/torus/model"
)

// tiny is a model small enough to count by hand.
var tiny = model.Config{Vocab: 16, Dim: 8, Layers: 2, Heads: 2, KVHeads: 1, MLPDim: 16, RopeTheta: 10000, NormEps: 1e-5}

// reference is bench/stepbench's reference model.
var reference = model.Config{Vocab: 256, Dim: 256, Layers: 4, Heads: 8, KVHeads: 4, MLPDim: 688, RopeTheta: 10000, NormEps: 1e-5}

func cpuConfig(m model.Config, seqLen int) Config {
	return Config{
		Model: m, Precision: FP32, SeqLen: seqLen, SP: 1, DP: 1, Strategy: "ring", GradAccum: 1,
		Recompute: "layer", Offload: "none", AttnBlockQ: 32, AttnBlockK: 32,
		Device: CPU, Concurrency: 1, WorkersPerMachine: 1, GCFactor: 2, MatmulGFLOPS: 100,
	}
}

func TestTinyByHand(t *testing.T) {
	c := cpuConfig(tiny, 64)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	r := Plan(c)
	// Parameters: per layer 2 norms (2*8) + q (8*8) + k, v (2 * 4*8, one kv head of 4)
	// + o (8*8) + gate, up, down (3 * 8*16) = 16+64+64+64+384 = 592; two layers
	// 1184; embedding and head 2 * 16*8 = 256 and the final norm 8: 1448.
	const n = 1448
	if r.Params != n {
		t.Errorf("params %d, want %d", r.Params, n)
	}
	if r.Weights != 4*n || r.Grads != 4*n || r.Optimizer != 8*n {
		t.Errorf("weights %d grads %d optimizer %d, want %d %d %d", r.Weights, r.Grads, r.Optimizer, 4*n, 4*n, 8*n)
	}
	// recompute layer stores h [64, 8] per layer: 2048 B, two layers.
	if r.StoredPerLayer != 2048 || r.Stored != 4096 {
		t.Errorf("stored %d per layer, %d resident; want 2048, 4096", r.StoredPerLayer, r.Stored)
	}
	// The attention backward, in elements (L=64, D=8, H*Dh=8, KH*Dh=4, H=2, Dh=4,
	// 2 query blocks of 32, one at a time):
	//   context: dh 64*8 + q, k, v 64*(8+4+4) + cos, sin 2*64*4 + layer grads 592
	//            + o, lse (recomputed) 64*(8+2)                    = 512+1024+512+592+640 = 3280
	//   PostAttnVJP's dh, do 64*(8+8)                                                    = 1024
	//   do, q copies and dq 3*64*8, lse and delta 2*64*2, k, v cut and dk, dv 4*64*4      = 1536+256+1024 = 2816
	//   (no dK/dV partial per query block: each block's share goes into dk, dv's rows)
	//   one pair at a time: its scores 3 * 2 heads * 32*32 and its dq, dk, dv 32*8 + 2*32*4 = 6144+512 = 6656
	// The MLP backward's buffers (6*64*16 + 4*64*8 = 8192) are in the pool, less
	// the share the attention's own allocations (copies, k, v cut, dk, dv: 1536+1024)
	// displace of what is live (long-lived 16*1448+4096 B plus the baseline, and 3280+1024+2816+6656).
	attn := 3280.0 + 1024 + 2816 + 6656
	long := float64(16*n + 4096 + Measured.BaselineLiveBytes)
	pooled := 8192 * (1 - Measured.PoolFalloff*(1536+1024)*4/(long+attn*4))
	want := int64(attn+pooled) * 4
	if r.Transient != want {
		t.Errorf("transient %d (%s), want %d", r.Transient, r.TransientPiece, want)
	}
	if !strings.HasPrefix(r.TransientPiece, "attention backward") {
		t.Errorf("largest transient %q, want the attention backward", r.TransientPiece)
	}
	// RSS: the non-heap part, and twice what lives long plus the transient at its reach.
	heap := 2 * (long + Measured.TransientReach*float64(want))
	if got := r.Total; got != Measured.NonHeapBytes+int64(heap) {
		t.Errorf("total %d, want %d", got, Measured.NonHeapBytes+int64(heap))
	}
	var sum int64
	for _, comp := range r.Components {
		sum += comp.Bytes
	}
	if sum != r.Total {
		t.Errorf("components sum to %d, total %d", sum, r.Total)
	}
}

func TestFLOPsByHand(t *testing.T) {
	c := cpuConfig(tiny, 64)
	c.Recompute = "except_attention"
	// Projections and MLP: 2*64*(8*8 + 2*8*4 + 8*8 + 3*8*16) = 2*64*576 = 73728 per
	// layer; attention 4*64*8*(32+16) = 98304 (keys: half of 64, plus half a block
	// of 32); head 2*64*8*16 = 16384. Projections run 4 times (forward, backward
	// twice, recompute), attention 3.5 (not recomputed), the head 3 times.
	want := 2*(73728.0*4+98304*3.5) + 3*16384
	if got := StepFLOPs(c); got != want {
		t.Errorf("FLOPs %g, want %g", got, want)
	}
	c.Recompute = "layer"
	if got := StepFLOPs(c); got != want+2*98304 {
		t.Errorf("recompute layer: FLOPs %g, want %g", got, want+2*98304)
	}
	c.GradAccum = 3
	if got := StepFLOPs(c); got != 3*(want+2*98304) {
		t.Errorf("3 micro-batches: FLOPs %g, want %g", got, 3*(want+2*98304))
	}
	r := Plan(c)
	attn := 3 * 2 * 98304 * 4.5 // 3 micro-batches, 2 layers, 4.5 attention passes
	if r.AttnFLOPs != attn {
		t.Errorf("attention FLOPs %g, want %g", r.AttnFLOPs, attn)
	}
	secs := ((r.FLOPs-attn)/Measured.Efficiency + attn/Measured.AttnEfficiency) / 100e9
	if math.Abs(r.StepSeconds/secs-1) > 1e-12 {
		t.Errorf("step %g s, want %g", r.StepSeconds, secs)
	}
}

func TestScaling(t *testing.T) {
	base := cpuConfig(reference, 8192)
	base.AttnBlockQ, base.AttnBlockK, base.Concurrency = 512, 512, 2
	plan := func(edit func(*Config)) Report {
		c := base
		edit(&c)
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		return Plan(c)
	}
	r0 := Plan(base)
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		check func(r Report) bool
	}{
		{"stored activations double with seq_len", func(c *Config) { c.SeqLen *= 2 }, func(r Report) bool { return r.Stored == 2*r0.Stored }},
		{"the transient grows no faster than seq_len (no dK/dV partial per query block)", func(c *Config) { c.SeqLen *= 2 }, func(r Report) bool {
			return r.Transient <= 2*r0.Transient && r.Transient > 3*r0.Transient/2
		}},
		{"sp 2 halves what each worker stores", func(c *Config) { c.SP, c.WorkersPerMachine = 2, 2 }, func(r Report) bool { return r.Stored == r0.Stored/2 }},
		{"sp 2 shrinks the transient by a third or more (all but the score buffers halve)", func(c *Config) { c.SP, c.WorkersPerMachine = 2, 2 }, func(r Report) bool { return r.Transient < r0.Transient*2/3 }},
		{"sp does not shard weights or moments", func(c *Config) { c.SP, c.WorkersPerMachine = 2, 2 }, func(r Report) bool {
			return r.Weights == r0.Weights && r.Optimizer == r0.Optimizer
		}},
		{"except_attention stores o and lse too", func(c *Config) { c.Recompute = "except_attention" }, func(r Report) bool {
			return r.StoredPerLayer == r0.StoredPerLayer+8192*(256+8)*4
		}},
		{"offload disk keeps two layers", func(c *Config) { c.Offload = "disk" }, func(r Report) bool {
			return r.Stored == 2*r0.StoredPerLayer && r.SpillBytes == 2*3*r0.StoredPerLayer
		}},
		{"offload disk: the same two layers at 16 layers", func(c *Config) { c.Offload, c.Model.Layers = "disk", 16 }, func(r Report) bool {
			return r.Stored == 2*r0.StoredPerLayer && r.SpillBytes == 2*15*r0.StoredPerLayer
		}},
		{"offload host is none on the CPU", func(c *Config) { c.Offload = "host" }, func(r Report) bool { return r.Total == r0.Total }},
		{"at 16384, larger query blocks do not shrink the transient (nothing is per query block)", func(c *Config) { c.SeqLen, c.AttnBlockQ = 16384, 1024 }, func(r Report) bool {
			c := base
			c.SeqLen = 16384
			return r.Transient >= Plan(c).Transient
		}},
		{"at 16384, smaller blocks shrink the score buffers", func(c *Config) { c.SeqLen, c.AttnBlockQ, c.AttnBlockK = 16384, 256, 256 }, func(r Report) bool {
			c := base
			c.SeqLen = 16384
			return r.Transient < Plan(c).Transient
		}},
		{"float64 doubles every component", func(c *Config) { c.Precision = FP64 }, func(r Report) bool {
			return r.Weights == 2*r0.Weights && r.Stored == 2*r0.Stored && math.Abs(float64(r.Transient)/float64(r0.Transient)-2) < 0.1
		}},
		{"two workers on one machine need twice the memory", func(c *Config) { c.SP, c.WorkersPerMachine = 2, 2 }, func(r Report) bool { return r.Need() == 2*r.Total }},
		{"two workers on one machine share its matmul rate", func(c *Config) { c.SP, c.WorkersPerMachine = 2, 2 }, func(r Report) bool {
			return math.Abs(r.StepSeconds/r0.StepSeconds-1) < 0.05 // half the work at half the rate
		}},
		{"a memory limit below the peak holds the heap near it", func(c *Config) { c.MemoryLimit = 600 << 20 }, func(r Report) bool { return r.Total == 600<<20 }},
		{"a memory limit below what is live cannot help", func(c *Config) { c.MemoryLimit = 100 << 20 }, func(r Report) bool {
			return r.Total == Measured.NonHeapBytes+r.Weights+r.Grads+r.Optimizer+r.Stored+r.Transient+Measured.BaselineLiveBytes
		}},
		{"GOGC=50 shrinks the headroom", func(c *Config) { c.GCFactor = 1.5 }, func(r Report) bool { return r.GCHeadroom < r0.GCHeadroom/2+1 }},
	} {
		if r := plan(tc.edit); !tc.check(r) {
			t.Errorf("%s: got stored %d, transient %d (%s), total %d; base %d, %d, %d",
				tc.name, r.Stored, r.Transient, r.TransientPiece, r.Total, r0.Stored, r0.Transient, r0.Total)
		}
	}
}

func TestUlyssesAndRing(t *testing.T) {
	c := cpuConfig(reference, 8192)
	c.SP, c.WorkersPerMachine, c.AttnBlockQ, c.AttnBlockK = 2, 2, 512, 512
	ring := Plan(c)
	c.Strategy = "ulysses"
	uly := Plan(c)
	// Ulysses runs attention over the whole sequence with half the heads: 16
	// query blocks of 512 where the ring has 8 (its own 4096 tokens).
	if !strings.Contains(uly.TransientPiece, "16 query blocks") || !strings.Contains(ring.TransientPiece, "8 query blocks") {
		t.Errorf("largest transients: ulysses %q, ring %q", uly.TransientPiece, ring.TransientPiece)
	}
	if uly.Stored != ring.Stored {
		t.Errorf("stored: ulysses %d, ring %d: both hold their own tokens' layer inputs", uly.Stored, ring.Stored)
	}
	// One key/value head on sp 2: each rank holds it (32 wide, not 128/2).
	c.Model.KVHeads = 1
	if err := c.Validate(); err != nil {
		t.Errorf("ulysses with 1 kv head on sp 2: %v", err)
	}
	if one := Plan(c); one.Transient >= uly.Transient {
		t.Errorf("ulysses, 1 kv head: transient %d, with 4: %d", one.Transient, uly.Transient)
	}
	c.Model.Heads = 1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "heads") {
		t.Errorf("ulysses with 1 head on sp 2: %v, want an error naming heads", err)
	}
}

func TestGPU(t *testing.T) {
	llama := model.Config{Vocab: 32000, Dim: 4096, Layers: 32, Heads: 32, KVHeads: 32, MLPDim: 11008, RopeTheta: 10000, NormEps: 1e-5}
	c := Config{
		Model: llama, Precision: FP32, SeqLen: 1 << 20, SP: 8, DP: 1, Strategy: "ring", GradAccum: 1,
		Recompute: "layer", Offload: "host", AttnBlockQ: 1024, AttnBlockK: 1024, LossChunk: 2048,
		Device: GPU, Concurrency: 1, WorkersPerMachine: 1, MatmulGFLOPS: 312e3,
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	today := Plan(c)
	n := today.Params
	if n < 6.7e9 || n > 6.8e9 {
		t.Fatalf("Llama-2-7B has %d parameters, want about 6.74e9", n)
	}
	if today.Weights+today.Grads+today.Optimizer != 16*n {
		t.Errorf("float32 replicated: %d bytes of state, want 16 per parameter", today.Weights+today.Grads+today.Optimizer)
	}
	// host offload: two layers on the device, all 32 on the host.
	perLayer := int64(1<<20/8) * 4096 * 4
	if today.StoredPerLayer != perLayer || today.Stored != 2*perLayer || today.Host != 32*perLayer {
		t.Errorf("stored %d per layer, %d on the device, %d on the host", today.StoredPerLayer, today.Stored, today.Host)
	}
	if today.Fits(80 << 30) {
		t.Errorf("float32 with replicated AdamW fits 80 GiB: %s", Bytes(today.Total))
	}
	mixed := Plan(c.WithBF16ZeRO())
	if mixed.Weights != 2*n || mixed.Optimizer != 12*n/8 {
		t.Errorf("bf16 + ZeRO over 8: weights %d, optimizer %d; want %d, %d", mixed.Weights, mixed.Optimizer, 2*n, 12*n/8)
	}
	if len(mixed.Techniques) == 0 || len(today.Techniques) != 0 {
		t.Errorf("techniques: today %q, mixed %q", today.Techniques, mixed.Techniques)
	}
	// The MLP's [131072, 11008] intermediates are the largest transient;
	// in tiles of 8192 tokens, the attention backward is.
	tiled := c.WithBF16ZeRO()
	tiled.TileTokens = 8192
	tl := Plan(tiled)
	if !strings.HasPrefix(mixed.TransientPiece, "MLP backward") || tl.Transient >= mixed.Transient ||
		!strings.Contains(strings.Join(tl.Techniques, ", "), "MLP in tiles of 8192 tokens") {
		t.Errorf("MLP tiles: transient %d (%s), without %d (%s); techniques %q", tl.Transient, tl.TransientPiece, mixed.Transient, mixed.TransientPiece, tl.Techniques)
	}
	// No dK/dV partial per query block: 4x the query blocks changes the
	// attention backward by its score buffers and one pair's products only
	// (one pair at a time on a GPU).
	small := tiled
	small.AttnBlockQ = 256
	sm := Plan(small)
	diff := int64(3*32*(1024-256)*1024+(1024-256)*4096) * 2
	if !strings.HasPrefix(sm.TransientPiece, "attention backward (512 query blocks of 256)") || tl.Transient-sm.Transient != diff {
		t.Errorf("blocks of 256: transient %d (%s), of 1024: %d (%s); want %d less", sm.Transient, sm.TransientPiece, tl.Transient, tl.TransientPiece, diff)
	}
	host := c.WithBF16ZeRO()
	host.OptimizerOnHost = true
	if h := Plan(host); h.Optimizer != 0 || h.Host != mixed.Host+12*n/8 {
		t.Errorf("optimizer on host: device %d, host %d", h.Optimizer, h.Host)
	}
}

func TestSuggest(t *testing.T) {
	long := cpuConfig(reference, 16384)
	long.Recompute, long.AttnBlockQ, long.AttnBlockK, long.Concurrency = "except_attention", 512, 512, 2
	need := func(c Config) int64 { return Plan(c).Need() }
	t.Run("a memory limit first", func(t *testing.T) {
		mem := need(long) * 3 / 4
		s, ok := Suggest(long, mem)
		mib, _ := Plan(long).LimitFor(mem)
		if !ok || s.String() != fmt.Sprintf("memory.limit_mib: %d", mib) || s.Report.Need() > mem {
			t.Errorf("ok %v, %q -> %s of %s", ok, s, Bytes(s.Report.Need()), Bytes(mem))
		}
	})
	// With GOGC so low that the heap stays near what is live, a memory limit
	// cannot help: the other changes, in order.
	long.GCFactor = 1.05
	with := func(edit func(*Config)) Config {
		c := long
		edit(&c)
		return c
	}
	disk := with(func(c *Config) { c.Offload = "disk" })

	t.Run("fits already", func(t *testing.T) {
		s, ok := Suggest(long, need(long))
		if !ok || len(s.Changes) != 0 {
			t.Errorf("ok %v, changes %q: want none", ok, s.Changes)
		}
	})
	t.Run("offload first", func(t *testing.T) {
		s, ok := Suggest(long, need(disk))
		if !ok || s.String() != "memory.offload: disk" || s.Report.Need() != need(disk) {
			t.Errorf("ok %v, %q -> %s", ok, s, Bytes(s.Report.Need()))
		}
	})
	t.Run("blocks when offload is there already", func(t *testing.T) {
		// Smaller blocks shrink the score buffers of the pairs running at once.
		mem := need(with(func(c *Config) { c.Offload, c.AttnBlockQ, c.AttnBlockK = "disk", 256, 256 }))
		s, ok := Suggest(disk, mem)
		if !ok || len(s.Changes) != 1 || !strings.HasPrefix(s.Changes[0], "memory.attn_block_q") {
			t.Fatalf("ok %v, %q", ok, s)
		}
		if s.Config.AttnBlockQ*s.Config.AttnBlockK >= 512*512 {
			t.Errorf("suggested blocks of %d x %d: want smaller than 512 x 512", s.Config.AttnBlockQ, s.Config.AttnBlockK)
		}
		if s.Report.Need() > mem {
			t.Errorf("suggestion needs %s > %s", Bytes(s.Report.Need()), Bytes(mem))
		}
	})
	t.Run("the changes together, in order", func(t *testing.T) {
		// Nothing alone fits a memory below what disk offload and the best
		// blocks reach together; both are kept.
		both, _, _ := bestBlocks(disk, 0)
		mem := need(both) + 1<<20
		s, ok := Suggest(long, mem)
		if !ok || len(s.Changes) < 2 || s.Changes[0] != "memory.offload: disk" {
			t.Errorf("ok %v, %q -> %s (memory %s)", ok, s, Bytes(s.Report.Need()), Bytes(mem))
		}
	})
	t.Run("nothing fits", func(t *testing.T) {
		s, ok := Suggest(long, 10<<20)
		if ok {
			t.Errorf("10 MiB: suggested %q", s)
		}
	})
	t.Run("more GPUs", func(t *testing.T) {
		g := long
		g.Device, g.Concurrency, g.Offload, g.Recompute = GPU, 1, "host", "layer"
		g.Model = model.Config{Vocab: 32000, Dim: 2048, Layers: 16, Heads: 16, KVHeads: 16, MLPDim: 5632, RopeTheta: 1e4, NormEps: 1e-5}
		g.SeqLen, g.AttnBlockQ, g.AttnBlockK = 1<<18, 1024, 1024
		g = g.WithBF16ZeRO()
		g.TileTokens = 8192
		var four Config
		four = g
		four.SP = 4
		s, ok := Suggest(g, need(four))
		if !ok || s.Config.SP < 2 || !strings.Contains(s.String(), "GPUs") {
			t.Errorf("ok %v, %q (sp %d)", ok, s, s.Config.SP)
		}
	})
}

func TestLossChunk(t *testing.T) {
	c := cpuConfig(reference, 16384)
	c.Model.Vocab, c.AttnBlockQ, c.AttnBlockK, c.Concurrency, c.GCFactor = 32768, 512, 512, 2, 1.05
	whole := Plan(c) // loss_chunk 0: [16384, 32768] logits
	if whole.TransientPiece != "head: logits and their gradient ([16384, 32768])" {
		t.Errorf("loss_chunk 0: largest transient %q", whole.TransientPiece)
	}
	c.LossChunk = 2048
	r := Plan(c)
	// One chunk's logits, log-softmax, exp and gradient 4*2048*32768, its
	// [2048, 256] buffers 3*2048*256, the head's gradient 32768*256, and the
	// whole shard's final hidden states and dh 2*16384*256.
	head := int64(4*2048*32768+3*2048*256+32768*256+2*16384*256) * 4
	if r.Transient != head || r.TransientPiece != "head: logits and their gradient ([2048, 32768], one of 8 loss chunks)" {
		t.Errorf("loss_chunk 2048: transient %s (%s), want the head's %s", Bytes(r.Transient), r.TransientPiece, Bytes(head))
	}
	c.LossChunk = 1 << 20 // longer than the shard: the shard at once
	if got := Plan(c); got.Transient != whole.Transient {
		t.Errorf("loss_chunk past the shard: transient %d, want %d", got.Transient, whole.Transient)
	}
	c.LossChunk = 0
	s, ok := Suggest(c, r.Need())
	if !ok || len(s.Changes) != 1 || s.Changes[0] != "memory.loss_chunk: 2048" {
		t.Errorf("loss_chunk 0 in %s: ok %v, %q", Bytes(r.Need()), ok, s)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Recompute = "none" }, "recompute"},
		{func(c *Config) { c.Offload = "nvme" }, "offload"},
		{func(c *Config) { c.SP = 3 }, "zigzag"},
		{func(c *Config) { c.Precision = BF16Mixed }, "bf16-mixed is a GPU plan"},
		{func(c *Config) { c.Device = "tpu" }, "device"},
		{func(c *Config) { c.GCFactor = 0.5 }, "gc factor"},
		{func(c *Config) { c.AttnBlockQ = 0 }, "attention blocks"},
		{func(c *Config) { c.Model.KVHeads = 3 }, "divide"},
		{func(c *Config) { c.LossChunk = -1 }, "loss_chunk"},
	} {
		c := cpuConfig(tiny, 64)
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one naming %q", c, err, tc.want)
		}
	}
}
