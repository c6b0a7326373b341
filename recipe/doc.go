// Package recipe is the training recipe: its schema, its defaults, the YAML
// loader with --set overrides, and validation.
//
// A recipe is one YAML file. Every key has a default (see Default), so a
// recipe names only what differs; it must name at least one data source:
//
//	name: tiny-go
//	model:
//	  dim: 128
//	  layers: 2
//	data:
//	  sources:
//	    - type: text_dir
//	      path: $GOROOT/src
//	      include: ["*.go"]
//	  seq_len: 512
//	optim:
//	  lr: 1e-3
//	schedule:
//	  steps: 200
//
// Load it, overriding keys from the command line:
//
//	r, err := recipe.Load("tiny.yaml", []string{"optim.lr=3e-4", "data.sources.0.path=/corpus"})
//
// Loading is strict: unknown keys, values of the wrong type, malformed YAML
// and values that fail Validate are all errors, and each one names the file
// line (or the --set) and the dotted key it is about:
//
//	tiny.yaml:17: optim.lr: must be > 0, got -0.1
//	tiny.yaml:3: model: unknown key "layer" (did you mean "layers"?)
//	--set optim.lr=x: must be a number, got string "x"
//
// Every problem is reported at once, one per line (see Problems).
// YAML prints a recipe fully resolved, and Hash fingerprints that form.
package recipe
