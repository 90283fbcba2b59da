package engine

// SetPhaseHook lets external tests act as a phase of Trainer.Run begins
// ("step", "eval", "sample", "checkpoint", "export").
func SetPhaseHook(t *Trainer, f func(phase string)) { t.onPhase = f }

// TrainerControl returns the control a trainer obeys (made on first use),
// as Start hands it to its caller.
func TrainerControl(t *Trainer) RunControl {
	if t.ctl == nil {
		t.ctl = newControl()
	}
	return t.ctl
}
