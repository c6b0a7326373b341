package trainer

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/checkpoint"
	"github.com/torusml/torus/data"
	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/optim"
)

// rngState is the manifest's "rng": every random choice torus makes (document
// shuffles, one per epoch) derives from the seed and the data cursor's epoch, so
// the seed is the whole state.
type rngState struct {
	DataSeed uint64 `json:"data_seed"`
}

// Snapshot copies everything a checkpoint holds: parameters, optimizer moments,
// step, tokens seen, the data position of the next step, the seed, the recipe's
// hash and the worker layout. The copy is the checkpoint's: training can go on
// while it is written.
func (t *Trainer) Snapshot() (*checkpoint.Snapshot, error) { return t.SnapshotInto(nil) }

// SnapshotInto is Snapshot copying into the tensors of reuse, an earlier snapshot
// of this trainer that nothing reads any more, rather than allocating new ones:
// a run that checkpoints often then moves its state into two buffers in turn
// instead of making garbage of its size every time.
func (t *Trainer) SnapshotInto(reuse *checkpoint.Snapshot) (*checkpoint.Snapshot, error) {
	// Nothing non-finite is checkpointed (the frozen weights cannot change).
	for _, name := range t.order {
		if host.FirstNonFinite(t.Params.T[name]) >= 0 {
			return nil, fmt.Errorf("snapshot at step %d: %s holds a NaN or an infinity: not checkpointed", t.step, name)
		}
	}
	params := &model.Params{Config: t.Params.Config, DType: t.Params.DType, T: map[string]*tensors.Tensor{}, LoRA: t.Params.LoRA}
	opt := map[string]*tensors.Tensor{}
	if reuse != nil {
		params, opt = reuse.Params, reuse.Optim
	}
	for name, p := range t.Params.T {
		if c := params.T[name]; c != nil && copyInto(c, p) == nil {
			continue
		}
		c, err := p.LocalClone()
		if err != nil {
			return nil, fmt.Errorf("snapshot: %s: %w", name, err)
		}
		params.T[name] = c
	}
	state := t.opt.State()
	if t.zeroActive() { // the moments gathered whole at this step (Run's checkpoint steps)
		if t.gathered == nil || t.gatheredStep != t.step {
			return nil, fmt.Errorf("snapshot at step %d: with parallel.zero %d the moments are gathered by every worker at a checkpoint step of Run", t.step, t.Config.Zero)
		}
		state = t.gathered
	}
	for key, v := range state {
		if c := opt[key]; c != nil && c.Size() == v.Len() && setFlat(c, v) {
			continue
		}
		shape := t.Params.T[paramOf(key)].Shape().Dimensions
		if v.F32 != nil {
			opt[key] = tensors.FromFlatDataAndDimensions(v.F32, shape...) // copies
		} else {
			opt[key] = tensors.FromFlatDataAndDimensions(v.F64, shape...)
		}
	}
	cursor, err := json.Marshal(t.loader.Cursor())
	if err != nil {
		return nil, fmt.Errorf("snapshot: data cursor: %w", err)
	}
	rng, err := json.Marshal(rngState{DataSeed: t.Config.Seed})
	if err != nil {
		return nil, err
	}
	w := checkpoint.World{Workers: 1, SP: 1, DP: 1}
	if t.dist != nil {
		w = checkpoint.World{Workers: t.dist.Mesh.World, SP: t.dist.Mesh.SP, DP: t.dist.Mesh.DP, Strategy: t.dist.Strategy}
	}
	return &checkpoint.Snapshot{
		Step: t.step, TokensSeen: t.tokens, Cursor: cursor, RNG: rng, RecipeHash: t.Config.RecipeHash, World: w,
		Params: params, Optim: opt,
		OptimMeta: map[string]string{"type": "adamw", "steps": strconv.Itoa(t.opt.Steps())},
		Files:     t.tokenizerFiles(),
	}, nil
}

// setFlat copies v into dst if their dtypes agree.
func setFlat(dst *tensors.Tensor, v optim.Vec) (ok bool) {
	dst.MustMutableFlatData(func(d any) {
		switch d := d.(type) {
		case []float32:
			ok = v.F32 != nil && copy(d, v.F32) == len(d)
		case []float64:
			ok = v.F64 != nil && copy(d, v.F64) == len(d)
		}
	})
	return ok
}

// paramOf is the parameter an optimizer state key belongs to.
func paramOf(key string) string {
	if name, ok := strings.CutSuffix(key, optim.SecondMoment); ok {
		return name
	}
	name, _ := strings.CutSuffix(key, optim.FirstMoment)
	return name
}

// shapeOf is what must agree between a checkpoint's model and the recipe's.
type shapeOf struct {
	Vocab, Dim, Layers, Heads, KVHeads, HeadDim, MLPDim int
	RopeTheta, NormEps                                  float64
	Tied                                                bool
	RopeScaling                                         model.RopeScaling
}

func shape(c model.Config) shapeOf {
	if c.RopeScaling.Type == "none" {
		c.RopeScaling = model.RopeScaling{} // the two spellings of no scaling
	}
	return shapeOf{c.Vocab, c.Dim, c.Layers, c.Heads, c.KVHeads, c.HeadDimension(), c.MLPDim, c.RopeTheta, c.NormEps, c.TieEmbeddings, c.RopeScaling}
}

// Resume loads the checkpoint in dir (verifying every checksum first) and puts
// this trainer where it was: parameters, optimizer moments and step count,
// schedule step, tokens seen and data position. The checkpoint may come from
// another number of workers. It returns the checkpoint's manifest.
func (t *Trainer) Resume(dir string) (checkpoint.Manifest, error) {
	c, err := checkpoint.Open(dir)
	if err != nil {
		return checkpoint.Manifest{}, err
	}
	m := c.Manifest
	// The frozen base a LoRA run keeps in half precision is read as it is held.
	params, opt, err := c.LoadKeeping(t.Params.DType, func(name string) bool {
		p := t.Params.T[name]
		return p != nil && p.DType() != t.Params.DType
	})
	if err != nil {
		return m, err
	}
	if got, want := shape(params.Config), shape(t.Params.Config); got != want {
		return m, fmt.Errorf("resume %s: the checkpoint's model %+v is not the recipe's %+v", dir, got, want)
	}
	if got, want := loraOf(params), loraOf(t.Params); got != want {
		return m, fmt.Errorf("resume %s: the checkpoint's adapters (%s) are not the recipe's (%s)", dir, got, want)
	}
	var rng rngState
	if err := json.Unmarshal(m.RNG, &rng); err != nil {
		return m, fmt.Errorf("resume %s: manifest rng: %w", dir, err)
	}
	if rng.DataSeed != t.Config.Seed {
		return m, fmt.Errorf("resume %s: the checkpoint was trained with seed %d, the recipe says %d: the data order would differ", dir, rng.DataSeed, t.Config.Seed)
	}
	var cur data.Cursor
	if err := json.Unmarshal(m.Cursor, &cur); err != nil {
		return m, fmt.Errorf("resume %s: manifest data_cursor: %w", dir, err)
	}
	steps, err := strconv.Atoi(m.Optim["steps"])
	if err != nil || m.Optim["type"] != "adamw" {
		return m, fmt.Errorf("resume %s: manifest optim %v: want type adamw and a step count", dir, m.Optim)
	}
	state := map[string]optim.Vec{}
	for key, ts := range opt {
		name := paramOf(key)
		p, ok := t.Params.T[name]
		if !ok {
			return m, fmt.Errorf("resume %s: optimizer state %q is for no parameter of the model", dir, key)
		}
		if ts.DType() != p.DType() || !slices.Equal(ts.Shape().Dimensions, p.Shape().Dimensions) {
			return m, fmt.Errorf("resume %s: optimizer state %q is %s%v, the parameter is %s%v", dir, key, ts.DType(), ts.Shape().Dimensions, p.DType(), p.Shape().Dimensions)
		}
		if ts.DType() == dtypes.Float32 {
			state[key] = optim.Vec{F32: tensors.MustCopyFlatData[float32](ts)}
		} else {
			state[key] = optim.Vec{F64: tensors.MustCopyFlatData[float64](ts)}
		}
	}
	if err := t.opt.SetState(steps, t.shardState(state)); err != nil {
		return m, fmt.Errorf("resume %s: %w", dir, err)
	}
	if err := t.loader.Seek(cur); err != nil {
		return m, fmt.Errorf("resume %s: data: %w", dir, err)
	}
	for name, p := range t.Params.T { // in place: the engine holds these tensors
		if err := copyInto(p, params.T[name]); err != nil {
			return m, fmt.Errorf("resume %s: %s: %w", dir, name, err)
		}
	}
	t.step, t.tokens = m.Step, m.TokensSeen
	return m, nil
}

// loraOf describes a model's adapters, for comparing two.
func loraOf(p *model.Params) string {
	if p.LoRA == nil {
		return "none"
	}
	l := *p.LoRA
	return fmt.Sprintf("rank %d, alpha %g, targets %v, train embed %v, train norm %v", l.Rank, l.Alpha, l.Targets, l.TrainEmbed, l.TrainNorm)
}

// copyInto copies src's values into dst (same shape and dtype).
func copyInto(dst, src *tensors.Tensor) error {
	if src == nil {
		return fmt.Errorf("missing from the checkpoint")
	}
	if dst.DType() != src.DType() || !slices.Equal(dst.Shape().Dimensions, src.Shape().Dimensions) {
		return fmt.Errorf("checkpoint has %s%v, the model %s%v", src.DType(), src.Shape().Dimensions, dst.DType(), dst.Shape().Dimensions)
	}
	var rerr error
	err := dst.MutableBytes(func(d []byte) { // same dtype and shape: the bytes are the values
		rerr = src.ConstBytes(func(s []byte) { copy(d, s) })
	})
	return errors.Join(err, rerr)
}
