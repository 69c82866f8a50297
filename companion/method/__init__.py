"""The co-development method: phases, the session state machine, rotation. Imports nothing else."""
