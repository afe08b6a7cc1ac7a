package diskfmt
