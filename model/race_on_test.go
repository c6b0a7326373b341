//go:build race

package model_test

// raceDetector: the race detector's shadow memory and slowdown would be measured too.
const raceDetector = true
