package trainer

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/data"
	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/parallel"
)

// Dist is a worker's place in a parallel job.
type Dist struct {
	T        parallel.Transport
	Mesh     parallel.Mesh
	Strategy string // ring | ulysses
	// Ulysses, between 1 and Mesh.SP (exclusive), is hybrid sequence
	// parallelism: Ulysses inside groups of this many neighbouring ranks, a
	// ring across the Mesh.SP/Ulysses groups (parallel.NewHybrid). 0 or 1, or
	// Mesh.SP: the Strategy alone.
	Ulysses int
	Wait    parallel.WaitClock // time this worker's steps were blocked on communication
	// Balance, under ring attention, lets a slower rank hand query blocks to the
	// next one (parallel.Balancer; the results are bitwise the same). Every rank
	// must have one, or none.
	Balance *parallel.Balancer
}

// attention is the schedule for this worker: blockwise alone, or across the ring.
func (d *Dist) attention(local *model.BlockAttention, c Config) (Attention, error) {
	if d == nil || d.Mesh.SP == 1 {
		return local, nil
	}
	if d.T.Size() != d.Mesh.World {
		return nil, fmt.Errorf("trainer: transport has %d ranks, mesh %d", d.T.Size(), d.Mesh.World)
	}
	layout := parallel.Topology{Workers: d.Mesh.World, DP: d.Mesh.DP, SP: d.Mesh.SP, Strategy: d.Strategy, SeqLen: c.SeqLen}
	if _, err := layout.Mesh(); err != nil {
		return nil, err
	}
	if d.Ulysses > 1 && d.Ulysses < d.Mesh.SP {
		return parallel.NewHybrid(local, d.T, d.Mesh, d.Ulysses, &d.Wait)
	}
	if d.Strategy == "ulysses" {
		u, err := parallel.NewUlysses(local, d.T, d.Mesh)
		if u != nil {
			u.Wait = &d.Wait
		}
		return u, err
	}
	return &parallel.RingAttention{Attn: local, T: d.T, Mesh: d.Mesh, Wait: &d.Wait, Balance: d.Balance}, nil
}

// commCounters are this worker's totals so far: seconds blocked on
// communication and bytes sent (zero alone).
func (t *Trainer) commCounters() (waitSeconds float64, bytesSent int64) {
	if t.dist == nil {
		return 0, 0
	}
	return t.dist.Wait.Seconds(), t.dist.T.Stats().BytesSent
}

// Rank is this worker's rank (0 alone).
func (t *Trainer) Rank() int {
	if t.dist == nil {
		return 0
	}
	return t.dist.T.Rank()
}

func (t *Trainer) dp() int {
	if t.dist == nil {
		return 1
	}
	return t.dist.Mesh.DP
}

// mine reports whether micro-batch i of a step belongs to this worker's
// data-parallel group.
func (t *Trainer) mine(i int) bool {
	if t.dist == nil {
		return true
	}
	dp, _ := t.dist.Mesh.Coords(t.dist.T.Rank())
	return i%t.dist.Mesh.DP == dp
}

// shard returns this rank's zigzag slice of a micro-batch.
func (t *Trainer) shard(b data.Batch) (data.Batch, error) {
	if t.dist == nil || t.dist.Mesh.SP == 1 {
		return b, nil
	}
	_, sp := t.dist.Mesh.Coords(t.dist.T.Rank())
	idx, err := t.dist.Mesh.Zigzag(sp, len(b.Tokens))
	if err != nil {
		return data.Batch{}, err
	}
	return ShardBatch(b, idx), nil
}

// ShardBatch picks the tokens at idx, each with its target, position, document
// id and weight.
func ShardBatch(b data.Batch, idx []int) data.Batch {
	s := data.Batch{
		Tokens: make([]int32, len(idx)), Targets: make([]int32, len(idx)),
		Pos: make([]int32, len(idx)), Doc: make([]int32, len(idx)), Weight: make([]float32, len(idx)),
	}
	for j, i := range idx {
		s.Tokens[j], s.Targets[j], s.Pos[j], s.Doc[j], s.Weight[j] = b.Tokens[i], b.Targets[i], b.Pos[i], b.Doc[i], b.Weight[i]
	}
	return s
}

// reducer sums gradients over every worker in buckets: one per layer, started
// (in the background) as soon as the layer's backward has finished in the
// step's last micro-batch, so it overlaps the backward of the layers below; and
// a last one with the embedding, the final norm, the head and the loss.
type reducer struct {
	t       *Trainer
	ctx     context.Context
	cancel  context.CancelFunc
	step    int
	pending []chan error
}

func (t *Trainer) newReducer(ctx context.Context) *reducer {
	t.nreduce++
	ctx, cancel := context.WithCancel(ctx)
	return &reducer{t: t, ctx: ctx, cancel: cancel, step: t.nreduce}
}

func (r *reducer) active() bool { return r.t.dist != nil && r.t.dist.Mesh.World > 1 }

func (r *reducer) start(tag string, ts []*tensors.Tensor) {
	done := make(chan error, 1)
	r.pending = append(r.pending, done)
	go func() {
		done <- parallel.AllReduceSum(r.ctx, r.t.dist.T, r.t.allRanks(), fmt.Sprintf("grads/%d/%s", r.step, tag), ts)
	}()
}

// layer starts the all-reduce of layer l's gradients.
func (r *reducer) layer(l int) {
	if !r.active() {
		return
	}
	var ts []*tensors.Tensor
	for _, name := range r.t.layerParams[l] {
		ts = append(ts, r.t.grads[name])
	}
	r.start(fmt.Sprintf("layer%d", l), ts)
}

// rest reduces the last bucket (the embedding, the final norm, the head and the
// loss), waits for every bucket, and returns the summed loss.
func (r *reducer) rest(loss float64) (float64, error) {
	defer r.cancel()
	if !r.active() {
		r.t.stopAgreed = r.t.stopAsked.Load()
		return loss, nil
	}
	// The loss, and whether this worker was asked to stop: summed, every
	// worker learns the same answer at the same step.
	asked := 0.0
	if r.t.stopAsked.Load() {
		asked = 1
	}
	lossT := host.FromFloat64(r.t.Params.DType, []float64{loss, asked}, 2)
	var ts []*tensors.Tensor
	for _, name := range r.t.otherParams {
		ts = append(ts, r.t.grads[name])
	}
	r.start("rest", append(ts, lossT))
	var first error
	defer r.t.dist.Wait.Since("gradient all-reduce", time.Now())
	for _, done := range r.pending {
		if err := <-done; err != nil && first == nil {
			first = err
			r.cancel() // the other buckets cannot complete either
		}
	}
	if first != nil {
		return 0, fmt.Errorf("gradient all-reduce: %w", first)
	}
	sum := host.ToFloat64(lossT)
	r.t.stopAgreed = sum[1] > 0
	return sum[0], nil
}

// abandon stops buckets in flight after a failed step.
func (r *reducer) abandon() {
	r.cancel()
	for _, done := range r.pending {
		<-done
	}
}

func (t *Trainer) allRanks() []int {
	all := make([]int, t.dist.Mesh.World)
	for i := range all {
		all[i] = i
	}
	return all
}

// layerParams are each layer's trainable parameter names: the all-reduce buckets.
func layerParams(p *model.Params) [][]string {
	out := make([][]string, p.Config.Layers)
	for _, name := range p.Trainable() {
		var l int
		if _, err := fmt.Sscanf(name, "model.layers.%d.", &l); err == nil {
			out[l] = append(out[l], name)
		}
	}
	return out
}

// otherParams are the trainable parameters outside the layers: the last bucket.
func otherParams(p *model.Params) []string {
	var out []string
	for _, name := range p.Trainable() {
		if !strings.HasPrefix(name, "model.layers.") {
			out = append(out, name)
		}
	}
	return out
}
