"""Writes a .vti again as a .pvti of 4 block pieces (split along y and z), as
ParaView's parallel writers do: python write_block_pieces.py IN.vti OUT.pvti"""
import sys

from vtkmodules.vtkIOParallelXML import vtkXMLPImageDataWriter
from vtkmodules.vtkIOXML import vtkXMLImageDataReader

reader = vtkXMLImageDataReader()
reader.SetFileName(sys.argv[1])
writer = vtkXMLPImageDataWriter()
writer.SetInputConnection(reader.GetOutputPort())  # the reader gives each piece its extent
writer.SetFileName(sys.argv[2])
writer.SetNumberOfPieces(4)
writer.SetStartPiece(0)
writer.SetEndPiece(3)
writer.SetDataModeToAppended()
writer.EncodeAppendedDataOff()
writer.SetCompressorTypeToNone()
if not writer.Write():
    sys.exit("writing %s failed" % sys.argv[2])
