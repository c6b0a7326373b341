package eval

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
)

func TestNucleus(t *testing.T) {
	probs := []float64{0.1, 0.5, 0.15, 0.25}
	for _, tc := range []struct {
		p    float64
		want []int
	}{
		{0.3, []int{1}},
		{0.5, []int{1}},
		{0.7, []int{1, 3}},
		{0.75, []int{1, 3}},
		{0.76, []int{1, 3, 2}},
		{0.95, []int{1, 3, 2, 0}},
		{1, []int{1, 3, 2, 0}},
	} {
		if got := Nucleus(probs, tc.p); !slices.Equal(got, tc.want) {
			t.Errorf("top-p %g: kept %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := Nucleus([]float64{0.3, 0.3, 0.4}, 0.5); !slices.Equal(got, []int{2, 0}) {
		t.Errorf("tie: kept %v, want [2 0] (the lower index first)", got)
	}
}

// TestSamplerKeepsTheNucleus draws many tokens: only the nucleus appears, in
// proportion to its renormalized probabilities.
func TestSamplerKeepsTheNucleus(t *testing.T) {
	probs := []float64{0.1, 0.5, 0.15, 0.25}
	logits := make([]float32, len(probs))
	for i, p := range probs {
		logits[i] = float32(math.Log(p))
	}
	s := Sampler{Temperature: 1, TopP: 0.7, RNG: rand.New(rand.NewPCG(1, 2))}
	counts := make([]int, len(probs))
	const draws = 6000
	for range draws {
		counts[s.Next(logits)]++
	}
	if counts[0] != 0 || counts[2] != 0 {
		t.Errorf("tokens outside the nucleus {1, 3} drawn: %v", counts)
	}
	if frac := float64(counts[1]) / draws; math.Abs(frac-0.5/0.75) > 0.03 {
		t.Errorf("token 1 drawn %.3f of the time, want %.3f", frac, 0.5/0.75)
	}
	// Temperature sharpens: at 0.05 token 1 is all but certain, at 0 it is certain.
	s = Sampler{Temperature: 0.05, TopP: 1, RNG: rand.New(rand.NewPCG(1, 2))}
	for range 200 {
		if tok := s.Next(logits); tok != 1 {
			t.Fatalf("temperature 0.05 drew %d", tok)
		}
	}
	if tok := (Sampler{TopP: 1}).Next(logits); tok != 1 {
		t.Errorf("greedy picked %d, want 1", tok)
	}
}

func TestSamplerValidate(t *testing.T) {
	for _, s := range []Sampler{{Temperature: -1, TopP: 1}, {TopP: 0}, {TopP: 1.5}, {TopP: math.NaN()}, {Temperature: math.Inf(1), TopP: 1}} {
		if err := s.Validate(); err == nil {
			t.Errorf("%+v: no error", s)
		}
	}
	if err := (Sampler{Temperature: 0.7, TopP: 0.9}).Validate(); err != nil {
		t.Error(err)
	}
}

// TestKVCacheMatchesRecompute: the logits of every step with the KV cache
// equal those of a full forward over the sequence so far, across key blocks.
func TestKVCacheMatchesRecompute(t *testing.T) {
	m := tinyModel(t, tinyConfig, dtypes.Float64, 8)
	ctx := context.Background()
	prompt := randTokens(5, tinyConfig.Vocab, 3)
	steps := randTokens(14, tinyConfig.Vocab, 4)
	kv := m.newKVCache(len(prompt) + len(steps))
	if got := len(kv.keyTok.Pos); got != 24 {
		t.Fatalf("cache capacity %d, want 24 (3 key blocks)", got)
	}
	got, err := kv.prefill(ctx, prompt)
	if err != nil {
		t.Fatal(err)
	}
	seq := slices.Clone(prompt)
	for i := 0; ; i++ {
		want, err := m.lastLogits(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		for j := range want {
			if math.Abs(float64(got[j]-want[j])) > 1e-9 {
				t.Fatalf("after %d tokens: logit %d is %g with the cache, %g recomputed", len(seq), j, got[j], want[j])
			}
		}
		if i == len(steps) {
			break
		}
		seq = append(seq, steps[i])
		if got, err = kv.step(ctx, steps[i]); err != nil {
			t.Fatal(err)
		}
	}
}

func TestGenerate(t *testing.T) {
	m := tinyModel(t, tinyConfig, dtypes.Float64, 8)
	ctx := context.Background()
	prompt := randTokens(6, tinyConfig.Vocab, 5)
	greedy := GenerateConfig{MaxTokens: 12, Sampler: Sampler{TopP: 1}}
	var streamed []int32
	cached, err := m.Generate(ctx, prompt, greedy, func(tok int32) error { streamed = append(streamed, tok); return nil })
	if err != nil {
		t.Fatal(err)
	}
	greedy.NoCache = true
	full, err := m.Generate(ctx, prompt, greedy, func(int32) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(cached) != 12 || !slices.Equal(cached, full) || !slices.Equal(cached, streamed) {
		t.Errorf("greedy with the cache %v, streamed %v, without %v", cached, streamed, full)
	}
	// The same seed gives the same sample.
	sample := func() []int32 {
		cfg := GenerateConfig{MaxTokens: 10, Sampler: Sampler{Temperature: 1, TopP: 0.9, RNG: rand.New(rand.NewPCG(9, 9))}}
		out, err := m.Generate(ctx, prompt, cfg, func(int32) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if a, b := sample(), sample(); !slices.Equal(a, b) {
		t.Errorf("same seed, different samples: %v, %v", a, b)
	}
	// emit's error stops generation.
	stop := errors.New("stop")
	out, err := m.Generate(ctx, prompt, GenerateConfig{MaxTokens: 10, Sampler: Sampler{TopP: 1}}, func(int32) error { return stop })
	if !errors.Is(err, stop) || len(out) != 1 {
		t.Errorf("emit failing: %d tokens, %v", len(out), err)
	}
	for _, tc := range []struct {
		cfg    GenerateConfig
		prompt []int32
		want   string
	}{
		{GenerateConfig{MaxTokens: 0, Sampler: Sampler{TopP: 1}}, prompt, "max tokens"},
		{GenerateConfig{MaxTokens: 1, Sampler: Sampler{Temperature: -1, TopP: 1}}, prompt, "temperature"},
		{GenerateConfig{MaxTokens: 1, Sampler: Sampler{TopP: 2}}, prompt, "top-p"},
		{GenerateConfig{MaxTokens: 1, Sampler: Sampler{TopP: 1}}, nil, "no tokens"},
		{GenerateConfig{MaxTokens: 1, Sampler: Sampler{TopP: 1}}, []int32{99}, "vocabulary"},
	} {
		if _, err := m.Generate(ctx, tc.prompt, tc.cfg, func(int32) error { return nil }); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one with %q", tc.cfg, err, tc.want)
		}
	}
}
