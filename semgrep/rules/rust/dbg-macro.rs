fn total(values: &[u32]) -> u32 {
    // ruleid: chum.rust.dbg-macro
    let sum = dbg!(values.iter().sum());
    sum
}

fn total_quietly(values: &[u32]) -> u32 {
    // ok: chum.rust.dbg-macro
    values.iter().sum()
}
