//! Canonical JSON straight from `Serialize` types, without building a `serde_json::Value`
//! first: objects (structs and maps) are buffered per level and written with their keys sorted
//! by UTF-8 bytes; scalars are written by serde_json itself, so escaping and number formatting
//! are serde_json's. [`super::canonical_json`] uses it and falls back to the `Value` path for
//! anything it does not handle (non-string map keys); a test checks both agree.

use std::borrow::Cow;

use serde::ser::{self, Serialize};

#[derive(Debug)]
pub(crate) struct Unsupported(String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Unsupported(msg.to_string())
    }
}

type R = Result<(), Unsupported>;

fn scalar<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) -> R {
    serde_json::to_writer(out, v).map_err(|e| Unsupported(e.to_string()))
}

/// Writes `value` as canonical JSON to `out`.
pub(crate) fn write<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> R {
    value.serialize(Canon(out))
}

pub(crate) struct Canon<'a>(pub &'a mut Vec<u8>);

/// An object being written. Members go straight to the output, in the order they come; the
/// object is rewritten in key order at the end only if they did not come sorted (struct fields
/// in declaration order usually do not, nested objects are then copied once). Nothing is
/// buffered per member.
pub(crate) struct Object<'a> {
    out: &'a mut Vec<u8>,
    /// Where the object's `{` is in `out`.
    start: usize,
    /// Each member's key and the range of its encoded value in `out`, in the order written.
    members: Vec<(Cow<'static, str>, std::ops::Range<usize>)>,
    /// Whether the keys so far came in strictly increasing order.
    sorted: bool,
    key: Option<Cow<'static, str>>,
    /// For `{"Variant": {...}}`: the object is wrapped in the variant name.
    wrap: bool,
}

fn object<'a>(out: &'a mut Vec<u8>, wrap: Option<&'static str>, len: usize) -> Result<Object<'a>, Unsupported> {
    if let Some(w) = wrap {
        out.push(b'{');
        scalar(out, w)?;
        out.push(b':');
    }
    let start = out.len();
    out.push(b'{');
    Ok(Object { out, start, members: Vec::with_capacity(len), sorted: true, key: None, wrap: wrap.is_some() })
}

impl Object<'_> {
    fn member<T: Serialize + ?Sized>(&mut self, key: Cow<'static, str>, value: &T) -> R {
        if let Some((last, _)) = self.members.last() {
            self.sorted &= last.as_bytes() < key.as_bytes();
            self.out.push(b',');
        }
        scalar(self.out, key.as_ref())?;
        self.out.push(b':');
        let from = self.out.len();
        value.serialize(Canon(self.out))?;
        self.members.push((key, from..self.out.len()));
        Ok(())
    }

    fn finish(mut self) -> R {
        if !self.sorted {
            let written = self.out.split_off(self.start);
            self.members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            if self.members.windows(2).any(|w| w[0].0 == w[1].0) {
                // serde_json's `Value` would keep one of them; leave such input to that path.
                return Err(Unsupported("a duplicated key".into()));
            }
            self.out.push(b'{');
            for (i, (k, range)) in self.members.iter().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                scalar(self.out, k.as_ref())?;
                self.out.push(b':');
                self.out.extend_from_slice(&written[range.start - self.start..range.end - self.start]);
            }
        }
        self.out.push(b'}');
        if self.wrap {
            self.out.push(b'}');
        }
        Ok(())
    }
}

/// An array being written.
pub(crate) struct Array<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    wrap: Option<&'static str>,
}

impl Array<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Canon(self.out))
    }

    fn finish(self) -> R {
        self.out.push(b']');
        if self.wrap.is_some() {
            self.out.push(b'}');
        }
        Ok(())
    }
}

fn array<'a>(out: &'a mut Vec<u8>, wrap: Option<&'static str>) -> Result<Array<'a>, Unsupported> {
    if let Some(w) = wrap {
        out.push(b'{');
        scalar(out, w)?;
        out.push(b':');
    }
    out.push(b'[');
    Ok(Array { out, first: true, wrap })
}

impl<'a> ser::Serializer for Canon<'a> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    fn serialize_bool(self, v: bool) -> R {
        scalar(self.0, &v)
    }
    fn serialize_i8(self, v: i8) -> R {
        scalar(self.0, &v)
    }
    fn serialize_i16(self, v: i16) -> R {
        scalar(self.0, &v)
    }
    fn serialize_i32(self, v: i32) -> R {
        scalar(self.0, &v)
    }
    fn serialize_i64(self, v: i64) -> R {
        scalar(self.0, &v)
    }
    fn serialize_u8(self, v: u8) -> R {
        scalar(self.0, &v)
    }
    fn serialize_u16(self, v: u16) -> R {
        scalar(self.0, &v)
    }
    fn serialize_u32(self, v: u32) -> R {
        scalar(self.0, &v)
    }
    fn serialize_u64(self, v: u64) -> R {
        scalar(self.0, &v)
    }
    fn serialize_f32(self, _: f32) -> R {
        Err(Unsupported("floats are not canonical".into()))
    }
    fn serialize_f64(self, _: f64) -> R {
        Err(Unsupported("floats are not canonical".into()))
    }
    fn serialize_char(self, v: char) -> R {
        scalar(self.0, &v)
    }
    fn serialize_str(self, v: &str) -> R {
        scalar(self.0, v)
    }
    fn serialize_bytes(self, v: &[u8]) -> R {
        scalar(self.0, v)
    }
    fn serialize_none(self) -> R {
        self.0.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> R {
        value.serialize(self)
    }
    fn serialize_unit(self) -> R {
        self.0.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> R {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> R {
        scalar(self.0, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> R {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(self, _: &'static str, _: u32, variant: &'static str, value: &T) -> R {
        let mut o = object(self.0, None, 1)?;
        o.member(Cow::Borrowed(variant), value)?;
        o.finish()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'a>, Unsupported> {
        array(self.0, None)
    }
    fn serialize_tuple(self, _: usize) -> Result<Array<'a>, Unsupported> {
        array(self.0, None)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Array<'a>, Unsupported> {
        array(self.0, None)
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, variant: &'static str, _: usize) -> Result<Array<'a>, Unsupported> {
        array(self.0, Some(variant))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, Unsupported> {
        object(self.0, None, len.unwrap_or(4))
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Object<'a>, Unsupported> {
        object(self.0, None, len)
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, variant: &'static str, len: usize) -> Result<Object<'a>, Unsupported> {
        object(self.0, Some(variant), len)
    }
}

impl ser::SerializeSeq for Array<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        self.element(value)
    }
    fn end(self) -> R {
        self.finish()
    }
}

impl ser::SerializeTuple for Array<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        self.element(value)
    }
    fn end(self) -> R {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Array<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        self.element(value)
    }
    fn end(self) -> R {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Array<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        self.element(value)
    }
    fn end(self) -> R {
        self.finish()
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> R {
        // Only string keys (serde_json would also stringify numbers; the caller falls back).
        match serde_json::to_value(key) {
            Ok(serde_json::Value::String(s)) => {
                self.key = Some(Cow::Owned(s));
                Ok(())
            }
            _ => Err(Unsupported("a map key that is not a string".into())),
        }
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> R {
        let key = self.key.take().ok_or_else(|| Unsupported("a map value without a key".into()))?;
        self.member(key, value)
    }
    fn end(self) -> R {
        self.finish()
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> R {
        self.member(Cow::Borrowed(key), value)
    }
    fn end(self) -> R {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Object<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> R {
        self.member(Cow::Borrowed(key), value)
    }
    fn end(self) -> R {
        self.finish()
    }
}
