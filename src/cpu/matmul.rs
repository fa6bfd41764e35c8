//! Single-threaded tile matmuls (the work items already run in parallel) through the gemm crate, with the
//! bounds that make its raw-pointer interface sound checked once per call.

/// A read-only matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// Row-major with row stride `rs`.
    pub fn rows(data: &'a [f32], rs: usize) -> Self {
        Self { data, rs, cs: 1 }
    }

    /// The transpose of a row-major matrix with row stride `rs`.
    pub fn transposed(data: &'a [f32], rs: usize) -> Self {
        Self { data, rs: 1, cs: rs }
    }

    fn check(&self, rows: usize, cols: usize, what: &str) {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * self.rs + (cols - 1) * self.cs;
            assert!(last < self.data.len(), "{what}: {rows}x{cols} view past its slice");
        }
    }
}

/// `dst (m x n, row stride dst_rs) = [dst +] lhs (m x k) · rhs (k x n)`.
pub fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: View,
    rhs: View,
) {
    if m == 0 || n == 0 {
        return;
    }
    View::rows(dst, dst_rs).check(m, n, "dst");
    lhs.check(m, k, "lhs");
    rhs.check(k, n, "rhs");
    // SAFETY: the three checks above keep every index gemm forms inside its slice; dst does not alias the
    // inputs (it is a distinct &mut).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
