package trainer

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/torusml/torus/host"
)

// NonFiniteError is a step whose loss or gradient norm was NaN or infinite:
// nothing of it was applied (the weights and the optimizer are those of the
// step before), and a run stops on it unless it skips such steps.
type NonFiniteError struct {
	Step     int     // the step that went bad, 1-based
	Loss     float64 // the step's loss
	GradNorm float64 // its gradients' global norm
	// Param is the first parameter, in backward order (the head first, the
	// embedding last), whose gradient holds a non-finite value; "" when every
	// gradient is finite (the loss alone went bad).
	Param   string
	InARow  int // non-finite steps in a row, this one included
	Skipped int // with skipping: the steps skipped before this one gave up
}

func (e *NonFiniteError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "step %d: non-finite ", e.Step)
	if !finite(e.Loss) {
		fmt.Fprintf(&b, "loss (%v)", e.Loss)
	} else {
		fmt.Fprintf(&b, "gradient norm (%v; loss %.6g)", e.GradNorm, e.Loss)
	}
	if e.Param != "" {
		fmt.Fprintf(&b, "; the first gradient to go bad, in backward order: %s", describeParam(e.Param))
	}
	if e.InARow > 1 {
		fmt.Fprintf(&b, "; %d non-finite steps in a row", e.InARow)
	}
	b.WriteString(": the step was not applied")
	return b.String()
}

// describeParam names a parameter with its layer ("layer 3 (model.layers.3.mlp.down_proj.weight)").
func describeParam(name string) string {
	var layer int
	if _, err := fmt.Sscanf(name, "model.layers.%d.", &layer); err == nil {
		return fmt.Sprintf("layer %d (%s)", layer, name)
	}
	return name
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// firstBadGradient is the first trained parameter, in backward order, whose
// gradient holds a NaN or an infinity ("" if none): where the step went bad.
func (t *Trainer) firstBadGradient() string {
	names := slices.Clone(t.Params.Names()) // embedding, layers 0.., final norm, lm_head
	names = append(names, t.Params.AdapterNames()...)
	order := map[string]int{}
	for i, n := range names {
		order[n] = i
	}
	trained := slices.Clone(t.order)
	slices.SortStableFunc(trained, func(a, b string) int { return layerKey(b, order) - layerKey(a, order) })
	for _, name := range trained {
		if g := t.grads[name]; g != nil && host.FirstNonFinite(g) >= 0 {
			return name
		}
	}
	return ""
}

// layerKey orders parameters as the model runs them forward: an adapter
// within its layer, as its projection.
func layerKey(name string, order map[string]int) int {
	if i, ok := order[name]; ok && !strings.Contains(name, ".lora_") {
		return i
	}
	if base, _, ok := strings.Cut(name, ".lora_"); ok {
		if i, ok := order[base+".weight"]; ok {
			return i
		}
	}
	return order[name]
}
