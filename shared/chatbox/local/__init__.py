"""The one-process runtime (`chatbox dev`): serving the faces and consuming the local queue."""
