// What a follow policy may ask of the batch pipeline when a file changes under it, without
// knowing the pipeline's parser and record types.
#pragma once

namespace snaptail::detail {

class FileReader;

/// Implemented by BatchPipeline. Called on the tailer's thread only; each call may run the sink.
class PipelineControl {
  public:
    /// No more bytes will follow in `reader`'s file: its incomplete last line is delivered as
    /// a line, and everything framed goes out.
    virtual void end_file(FileReader& reader) = 0;
    /// `reader` is about to be closed or destroyed: whatever of it is framed goes out first.
    virtual void forget(FileReader& reader) = 0;
    /// Frames what a pause left of `reader` and delivers everything framed (stop).
    virtual void finish(FileReader& reader) = 0;

  protected:
    PipelineControl() = default;
    PipelineControl(const PipelineControl&) = default;
    PipelineControl& operator=(const PipelineControl&) = default;
    ~PipelineControl() = default;
};

}  // namespace snaptail::detail
