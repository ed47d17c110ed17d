//! Which partition owns a section: Kafka's default partitioner (murmur2 of the key bytes,
//! positive, modulo the partition count), so a section lands on the same partition number in
//! the embedded runtime and on a Kafka topic partitioned by the Java client or by librdkafka
//! with `partitioner=murmur2_random`.

use crate::model::{Command, SectionKey};

/// The partition of a section among `partitions`.
pub fn partition_of(key: &SectionKey, partitions: u32) -> u32 {
    partition_of_routing_key(&key.routing_key(), partitions)
}

/// The partition that decides `command` among `partitions` (a quota command's is its quota's).
pub fn partition_of_command(command: &Command, partitions: u32) -> u32 {
    partition_of_routing_key(&command.routing_key(), partitions)
}

fn partition_of_routing_key(routing_key: &str, partitions: u32) -> u32 {
    let hash = murmur2(routing_key.as_bytes()) & 0x7fff_ffff;
    hash % partitions.max(1)
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`, seed 0x9747b28c).
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_java_client() {
        // Values of org.apache.kafka.common.utils.Utils.murmur2 (Kafka's own UtilsTest).
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn spreads_sections_over_partitions() {
        let mut counts = [0u32; 4];
        for i in 0..1000 {
            counts[partition_of(&SectionKey::new("evt", format!("S{i}")), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|c| *c > 150), "{counts:?}");
    }
}
