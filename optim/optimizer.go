package optim

// Optimizer is what checkpoints and metrics need of an optimizer: its step count
// and its state, keyed as PyTorch's AdamW state_dict (name+FirstMoment,
// name+SecondMoment), as flat host vectors. The step itself differs by where the
// data lives: AdamW.Step takes host slices, DeviceAdamW.Step tensors.
type Optimizer interface {
	// Steps is the number of updates applied so far.
	Steps() int
	// StateBytes is the size of the optimizer state.
	StateBytes() int64
	// State returns the state by key (see each implementation for whether it
	// shares memory with the optimizer).
	State() map[string]Vec
	// SetState replaces the state with steps updates taken and the moments given.
	SetState(steps int, state map[string]Vec) error
}

var (
	_ Optimizer = (*AdamW)(nil)
	_ Optimizer = (*DeviceAdamW)(nil)
)
