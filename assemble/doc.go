package assemble
