package eval

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// Sampler picks the next token from a row of logits: greedy (the argmax) at
// Temperature 0; otherwise a draw from softmax(logits / Temperature) cut to
// its nucleus, the most probable tokens whose probabilities first sum to at
// least TopP (nucleus sampling, Holtzman et al. 2019), renormalized.
type Sampler struct {
	Temperature float64 // >= 0; 0: greedy
	TopP        float64 // in (0, 1]; 1 keeps every token
	RNG         *rand.Rand
}

// Validate reports a temperature below 0 or a top-p outside (0, 1].
func (s Sampler) Validate() error {
	if !(s.Temperature >= 0) || math.IsInf(s.Temperature, 1) {
		return fmt.Errorf("eval: temperature must be >= 0 and finite (0: greedy), got %g", s.Temperature)
	}
	if !(s.TopP > 0 && s.TopP <= 1) {
		return fmt.Errorf("eval: top-p must be in (0, 1], got %g", s.TopP)
	}
	return nil
}

// Next picks a token from logits [V].
func (s Sampler) Next(logits []float32) int32 {
	if s.Temperature == 0 {
		return Argmax(logits)
	}
	probs := Softmax(logits, s.Temperature)
	keep := Nucleus(probs, s.TopP)
	var total float64
	for _, i := range keep {
		total += probs[i]
	}
	u := s.RNG.Float64() * total
	for _, i := range keep {
		if u < probs[i] {
			return int32(i)
		}
		u -= probs[i]
	}
	return int32(keep[len(keep)-1]) // rounding left u just above the last
}

// Softmax is softmax(logits / temperature), in float64.
func Softmax(logits []float32, temperature float64) []float64 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = max(mx, float64(v))
	}
	p := make([]float64, len(logits))
	var sum float64
	for i, v := range logits {
		p[i] = math.Exp((float64(v) - mx) / temperature)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

// Nucleus returns the indices of the smallest set of most probable tokens whose
// probabilities sum to at least topP, most probable first (ties: lower index
// first). It always keeps at least one token; topP >= 1 keeps all of them.
func Nucleus(probs []float64, topP float64) []int {
	idx := make([]int, len(probs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return probs[idx[a]] > probs[idx[b]] })
	if topP >= 1 {
		return idx
	}
	var cum float64
	for n, i := range idx {
		cum += probs[i]
		if cum >= topP {
			return idx[:n+1]
		}
	}
	return idx
}
