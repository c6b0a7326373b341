// Package eval measures a trained model: perplexity by position on held-out
// documents, passkey retrieval accuracy by length and depth, and text
// generation (greedy, temperature, top-p).
//
// Everything runs on one worker through the model's own pieces (model.Pieces)
// and blockwise attention (model.BlockAttention), so no [L, L] matrix is ever
// built and a whole sequence of tens of thousands of tokens is one forward.
// Attention is always full causal attention, even for a model fine-tuned with
// shifted sparse attention (S2-Attn is a training-time restriction only).
//
//	backend, _ := device.Open("auto", device.Options{})
//	m, _ := eval.Load("runs/tiny/ckpt/step-000100", backend.Compute)
//	nll, _ := m.NLL(ctx, tokens)             // nll[i]: -log p(tokens[i+1] | tokens[:i+1])
//	res, _ := m.Passkey(ctx, eval.PasskeyConfig{Lengths: []int{1024, 4096}, Samples: 5})
//	res.WriteTable(os.Stdout)
//
// Files: model.go (loading and the forward), ppl.go (perplexity by position
// bucket), passkey.go (passkey retrieval), heatmap.go (the passkey PNG),
// sample.go and generate.go (sampling and the decoding loop, with a KV cache).
package eval
