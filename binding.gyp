{
  "targets": [
    {
      "target_name": "weitiao",
      "sources": [
        "native/binding.cc",
        "native/gemm.cc",
        "native/activations.cc",
        "native/layernorm.cc",
        "native/attention.cc",
        "native/embedding.cc",
        "native/loss.cc",
        "native/optimizer.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-std=c++17"],
      "libraries": ["-ldnnl", "-fopenmp"]
    }
  ]
}
