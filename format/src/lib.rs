//! Sconce's model formats, as docs/model-format.md defines them. One definition of the
//! `sequential` format's `config.json` and its rules, for the server that loads it, the trainer
//! that writes it and the fixtures the tests make.

pub mod sequential;
