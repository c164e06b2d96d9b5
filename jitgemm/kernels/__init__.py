"""One module per kernel family: template parameters, instance names, grid/block, argument order."""
