// Package runlog owns watching a run from outside the trainer: a Prometheus
// exporter of each step's figures (Exporter, served at /metrics), TensorBoard
// event files of its scalars (TensorBoard), and plots of runs' metrics.jsonl
// (Plot, for torus plot).
//
// All three read a step as its metrics.jsonl line: Exporter and TensorBoard
// take anything that encodes as one (the trainer's StepStats, from its step
// callback), Plot reads the files. So runlog does not import the trainer, and
// fields a newer trainer adds (eval_loss) come through by name.
package runlog
