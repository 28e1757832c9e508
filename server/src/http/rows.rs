//! Serialising a row-major buffer as a list of rows without building `Vec<Vec<f32>>`.

use serde::ser::{Serialize, SerializeSeq, Serializer};

pub struct Rows<'a> {
    pub data: &'a [f32],
    pub cols: usize,
}

impl Serialize for Rows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let cols = self.cols.max(1);
        let mut seq = s.serialize_seq(Some(self.data.len() / cols))?;
        for row in self.data.chunks(cols) {
            seq.serialize_element(row)?;
        }
        seq.end()
    }
}
