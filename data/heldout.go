package data

import (
	"fmt"
	"math/rand/v2"
	"slices"
)

// heldoutSeed keeps the held-out draw's generator apart from the loader's
// PCG(seed, epoch) and the passkey samples'.
const heldoutSeed = 0x68656c646f75742e // "heldout."

// OpenSplit opens the corpus of srcs (as OpenCorpus) and sets heldout of its
// documents aside: train is the rest, held the documents set aside, both in
// corpus order. Which documents are held out depends only on the corpus,
// heldout and seed: the first heldout indices of a permutation of the whole
// corpus's real documents drawn from the seed. Synthetic documents (passkey
// samples) are never held out and do not change the draw: two recipes with the
// same text sources and seed hold out the same documents whatever synthetic
// data they mix in (a base model and its long-context extension are compared on
// one held-out set). A trainer and an evaluator opening the same sources with
// the same numbers get the same split, and holding out more documents keeps
// those held out before. With heldout 0, train is the whole
// corpus, exactly as OpenCorpus lists it, and held has no documents.
func OpenSplit(srcs []SourceConfig, heldout int, seed uint64) (train, held *Corpus, err error) {
	c, err := OpenCorpus(srcs)
	if err != nil {
		return nil, nil, err
	}
	return c.HoldOut(heldout, seed)
}

// HoldOut splits the corpus as OpenSplit does. heldout must leave at least
// one document to train on.
func (c *Corpus) HoldOut(heldout int, seed uint64) (train, held *Corpus, err error) {
	switch {
	case heldout < 0:
		return nil, nil, fmt.Errorf("data: heldout must be >= 0, got %d", heldout)
	case heldout == 0:
		return c, &Corpus{}, nil
	}
	var real []int // the documents that may be held out
	for i, d := range c.docs {
		if d.kind != kindPasskey {
			real = append(real, i)
		}
	}
	if heldout >= len(real) {
		return nil, nil, fmt.Errorf("data: heldout %d leaves no document to train on: the corpus has %d (besides synthetic ones)", heldout, len(real))
	}
	picked := make([]int, heldout)
	for j, k := range rand.New(rand.NewPCG(seed^heldoutSeed, 0)).Perm(len(real))[:heldout] {
		picked[j] = real[k]
	}
	slices.Sort(picked)
	train = &Corpus{docs: make([]DocRef, 0, len(c.docs)-heldout)}
	held = &Corpus{docs: make([]DocRef, 0, heldout)}
	for i, d := range c.docs {
		if len(picked) > 0 && picked[0] == i {
			held.docs, picked = append(held.docs, d), picked[1:]
		} else {
			train.docs = append(train.docs, d)
		}
	}
	return train, held, nil
}
