package trainer

import (
	"context"
	"fmt"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/data"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/parallel"
)

// Dist is a worker's place in a parallel job.
type Dist struct {
	T        parallel.Transport
	Mesh     parallel.Mesh
	Strategy string // ring | ulysses
}

// attention is the schedule for this worker: blockwise alone, or across the ring.
func (d *Dist) attention(local *model.BlockAttention, c Config) (Attention, error) {
	if d == nil || d.Mesh.SP == 1 {
		return local, nil
	}
	if err := d.Mesh.Validate(); err != nil {
		return nil, err
	}
	if d.T.Size() != d.Mesh.World {
		return nil, fmt.Errorf("trainer: transport has %d ranks, mesh %d", d.T.Size(), d.Mesh.World)
	}
	if _, err := d.Mesh.Zigzag(0, c.SeqLen); err != nil {
		return nil, err
	}
	switch d.Strategy {
	case "ring", "":
		return &parallel.RingAttention{Attn: local, T: d.T, Mesh: d.Mesh}, nil
	case "ulysses":
		return parallel.NewUlysses(local, d.T, d.Mesh)
	}
	return nil, fmt.Errorf("trainer: parallel.strategy %q (ring or ulysses)", d.Strategy)
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

// shard returns this worker's part of micro-batch i of a step: nothing when it
// belongs to another data-parallel group, else this rank's zigzag slice of it.
func (t *Trainer) shard(i int, b data.Batch) (data.Batch, bool, error) {
	if t.dist == nil {
		return b, true, nil
	}
	dp, sp := t.dist.Mesh.Coords(t.dist.T.Rank())
	if i%t.dist.Mesh.DP != dp {
		return data.Batch{}, false, nil
	}
	if t.dist.Mesh.SP == 1 {
		return b, true, nil
	}
	idx, err := t.dist.Mesh.Zigzag(sp, len(b.Tokens))
	if err != nil {
		return data.Batch{}, false, err
	}
	return ShardBatch(b, idx), true, nil
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

// reduce sums the gradients and the loss over every worker (a ring all-reduce);
// alone it returns the loss as is.
func (t *Trainer) reduce(ctx context.Context, loss float64) (float64, error) {
	if t.dist == nil || t.dist.Mesh.World == 1 {
		return loss, nil
	}
	t.nreduce++
	all := make([]int, t.dist.Mesh.World)
	for i := range all {
		all[i] = i
	}
	ts := make([]*tensors.Tensor, 0, len(t.order)+1)
	for _, name := range t.order {
		ts = append(ts, t.grads[name])
	}
	lossT := model.NewScalar(t.Params.DType, loss)
	lossT = model.ReshapeCopy(lossT, 1)
	ts = append(ts, lossT)
	if err := parallel.AllReduceSum(ctx, t.dist.T, all, fmt.Sprintf("grads/%d", t.nreduce), ts); err != nil {
		return 0, fmt.Errorf("gradient all-reduce: %w", err)
	}
	return model.ToFloat64(lossT)[0], nil
}
