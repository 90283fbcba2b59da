package engine

// SetCheckpointHook lets external tests interrupt a checkpoint write.
func SetCheckpointHook(f func(stage string) error) { checkpointHook = f }
